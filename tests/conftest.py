"""Shared fixtures: fresh weights of real models, written to real files in temporary folders."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `task` is a top-level module, not part of the installed package


@pytest.fixture(scope="session")
def fresh_weights(tmp_path_factory) -> Path:
    """A TextClassifier state_dict with random weights unlike the committed model.pt (seed 12345)."""
    import torch

    import task

    torch.manual_seed(12345)
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(task.TextClassifier().state_dict(), path)
    return path


@pytest.fixture
def lone_task(tmp_path, fresh_weights) -> Path:
    """task.py copied alone into an empty folder beside a fresh model.pt; returns that folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(ROOT / "task.py", folder / "task.py")
    shutil.copy(fresh_weights, folder / "model.pt")
    return folder


@pytest.fixture
def project(tmp_path) -> Path:
    """A project root for recipes: task.py, the tests' tiny models, and the committed model.pt."""
    for name in ("task.py", "model.pt"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(Path(__file__).parent / "tiny_models.py", tmp_path / "tiny_models.py")
    return tmp_path


# --- the README's "Reliability" figures come from here ---------------------------------------------------
# A figure counts what passing tests recorded (reliability.settle). The README is checked only when this run
# shows every figure in full: every test that records one was collected, none was deselected or picked out by
# node id, and every one passed. Any other run (one file, -k, a skipped kill point) prints what it saw and
# says why it was not checked, and never fails for it.

RELIABILITY = ("bad inputs tried", "fuzz cases run", "kill points survived")
AT_LEAST = {"fuzz cases run"}  # hypothesis may add a few examples to those it is asked for
_run = {"sources": set(), "passed": set(), "deselected": 0, "by_node_id": False}
_outcomes: dict[str, str] = {}  # a test's first phase that did not pass


def _records(item: pytest.Item) -> bool:
    """Whether the test calls record() in its own body (a hypothesis test: in the function under @given)."""
    function = getattr(item, "function", None)
    function = getattr(getattr(function, "hypothesis", None), "inner_test", function)
    return "record" in getattr(getattr(function, "__code__", None), "co_names", ())


def pytest_deselected(items):
    _run["deselected"] += sum(_records(item) for item in items)


def pytest_collection_finish(session):
    _run["sources"] = {item.nodeid for item in session.items if _records(item)}
    _run["by_node_id"] = any("::" in str(arg) for arg in session.config.args)


def pytest_runtest_logreport(report):
    from reliability import settle

    if report.outcome != "passed":
        _outcomes.setdefault(report.nodeid, report.outcome)
    if report.when == "teardown":
        passed = _outcomes.pop(report.nodeid, None) is None
        settle(passed)
        if passed:
            _run["passed"].add(report.nodeid)


def _not_checked() -> str | None:
    """Why this run cannot confirm or refute the README's figures, or None when it shows them in full."""
    from reliability import counts

    if _run["by_node_id"]:
        return "tests picked by node id"
    if _run["deselected"]:
        return f"{_run['deselected']} reliability tests deselected"
    if left := len(_run["sources"] - _run["passed"]):
        return f"{left} reliability tests skipped, failed or not run"
    if missing := [w for w in RELIABILITY if not counts[w]]:
        return f"no test of {', '.join(missing)} in this run"
    return None


def _readme_figures() -> dict[str, int]:
    import re

    text = (ROOT / "README.md").read_text()
    return {
        what: int(m.group(1).replace(",", "")) for what in RELIABILITY if (m := re.search(rf"([\d,]+) {what}", text))
    }


def _disagreements() -> list[str]:
    """What the README says that this run did not show (empty unless the run shows every figure in full)."""
    from reliability import counts

    if _not_checked() is not None:
        return []
    readme = _readme_figures()
    return [
        f"README says {readme.get(w)} {w}, this run: {counts[w]}"
        for w in RELIABILITY
        if readme.get(w) is None or (counts[w] < readme[w] if w in AT_LEAST else counts[w] != readme[w])
    ]


def pytest_terminal_summary(terminalreporter):
    from reliability import counts

    if any(counts[w] for w in RELIABILITY) or _run["sources"]:
        terminalreporter.write_line("Reliability: " + ", ".join(f"{counts[w]:,} {w}" for w in RELIABILITY))
        if (why := _not_checked()) is not None:
            terminalreporter.write_line(f"Reliability figures not checked against the README: {why}")
    for line in _disagreements():
        terminalreporter.write_line(line, red=True)


def pytest_sessionfinish(session, exitstatus):
    """A full run that does not show what the README's Reliability section claims fails."""
    if _disagreements():
        session.exitstatus = 1
