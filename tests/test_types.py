"""The package, task.py and the benchmark scripts type-check with mypy (configured in pyproject.toml).

The benchmark scripts print the README's figures but no other test runs them: a changed signature in the
package once left ``benchmarks/speed_targets.py`` crashing (``run_cases`` gained ``threads`` and a second
result), and only a type check notices that without running the benchmark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_task_and_benchmarks_type_check(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    expected = 1 + sum(len(list((ROOT / folder).rglob("*.py"))) for folder in ("workbench", "benchmarks"))
    assert done.stdout.strip().splitlines()[-1] == f"Success: no issues found in {expected} source files"
