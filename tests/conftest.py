"""Shared fixtures: fresh weights of real models, written to real files in temporary folders."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `task` is a top-level module, not part of the installed package

import task  # noqa: E402


@pytest.fixture(scope="session")
def fresh_weights(tmp_path_factory) -> Path:
    """A TextClassifier state_dict with random weights unlike the committed model.pt (seed 12345)."""
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

RELIABILITY = ("bad inputs tried", "fuzz cases run", "kill points survived")
AT_LEAST = {"fuzz cases run"}  # hypothesis may add a few examples to those it is asked for


def _readme_figures() -> dict[str, int]:
    import re

    text = (ROOT / "README.md").read_text()
    return {
        what: int(m.group(1).replace(",", "")) for what in RELIABILITY if (m := re.search(rf"([\d,]+) {what}", text))
    }


def _disagreements() -> list[str]:
    """What the README says that this run did not show (empty unless every reliability test ran)."""
    from reliability import counts

    if not all(counts[w] for w in RELIABILITY):
        return []
    readme = _readme_figures()
    return [
        f"README says {readme.get(w)} {w}, this run: {counts[w]}"
        for w in RELIABILITY
        if readme.get(w) is None or (counts[w] < readme[w] if w in AT_LEAST else counts[w] != readme[w])
    ]


def pytest_terminal_summary(terminalreporter):
    from reliability import counts

    if any(counts[w] for w in RELIABILITY):
        terminalreporter.write_line("Reliability: " + ", ".join(f"{counts[w]:,} {w}" for w in RELIABILITY))
    for line in _disagreements():
        terminalreporter.write_line(line, red=True)


def pytest_sessionfinish(session, exitstatus):
    """A full run that does not show what the README's Reliability section claims fails."""
    if _disagreements():
        session.exitstatus = 1
