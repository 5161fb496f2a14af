"""The Reliability summary (conftest.py): it counts what passed, and only a run that shows every figure is checked.

Each case runs pytest on a small project of its own: this suite's conftest.py and reliability.py, a README
with figures, and tests that record them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FIGURES = """
import os

import pytest

from reliability import record


@pytest.mark.parametrize("case", ["a", "b"])
def test_bad_input(case):
    record("bad inputs tried")


def test_fuzz():
    record("fuzz cases run", 3)


def test_other():
    pass
"""
KILL = """
import os

import pytest

from reliability import record


@pytest.mark.parametrize("point", ["a", "b"])
def test_kill_point(point):
    record("kill points survived")  # recorded, then skipped: must not count
    if point == "b" and os.environ.get("NO_NAMESPACES"):
        pytest.skip("no mount namespace here")
"""
README = "## Reliability\n\n- {bad} bad inputs tried\n- at least 3 fuzz cases run\n- 2 kill points survived\n"


def _pytest(tmp_path: Path, *args: str, bad: int = 2, skip_kill: bool = False) -> subprocess.CompletedProcess:
    (tmp_path / "tests").mkdir()
    for name in ("conftest.py", "reliability.py"):
        shutil.copy(TESTS / name, tmp_path / "tests" / name)
    (tmp_path / "tests" / "test_figures.py").write_text(FIGURES)
    (tmp_path / "tests" / "test_kill.py").write_text(KILL)
    (tmp_path / "README.md").write_text(README.format(bad=bad))
    env = {"PATH": "/usr/bin:/bin", "NO_NAMESPACES": "1" if skip_kill else ""}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


NOT_CHECKED = "Reliability figures not checked against the README"


@pytest.mark.parametrize(
    "args, bad, skip_kill, code, shown",
    [
        # a full run that agrees with the README
        (["tests"], 2, False, 0, ["Reliability: 2 bad inputs tried, 3 fuzz cases run, 2 kill points survived"]),
        # a full run that does not: it fails, naming the figure
        (["tests"], 5, False, 1, ["README says 5 bad inputs tried, this run: 2"]),
        # a skipped test is not counted, and the run is not checked
        (
            ["tests"],
            2,
            True,
            0,
            ["1 kill points survived", f"{NOT_CHECKED}: 1 reliability tests skipped, failed or not run"],
        ),
        # partial runs: deselected, picked by node id, one figure missing
        (
            ["tests", "--deselect", "tests/test_figures.py::test_bad_input[b]"],
            2,
            False,
            0,
            ["1 bad inputs tried", f"{NOT_CHECKED}: 1 reliability tests deselected"],
        ),
        (
            ["tests/test_figures.py::test_bad_input[a]", "tests/test_figures.py::test_fuzz", "tests/test_kill.py"],
            2,
            False,
            0,
            ["1 bad inputs tried, 3 fuzz cases run, 2 kill points survived", f"{NOT_CHECKED}: tests picked by node id"],
        ),
        (["tests/test_figures.py"], 2, False, 0, [f"{NOT_CHECKED}: no test of kill points survived in this run"]),
    ],
    ids=["agrees", "disagrees", "skipped", "deselected", "node-id", "one-file"],
)
def test_reliability_summary(tmp_path, args, bad, skip_kill, code, shown):
    done = _pytest(tmp_path, *args, bad=bad, skip_kill=skip_kill)
    assert done.returncode == code, done.stdout + done.stderr
    for line in shown:
        assert line in done.stdout, done.stdout
    assert ("README says" in done.stdout) == (code == 1), done.stdout
