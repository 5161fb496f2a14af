"""Wall time of the workbench itself on a recipe: a cold run and an unchanged rerun, benchmarks included.

    python benchmarks/recipe_speed.py [--recipe recipes/int8.yaml] [--check-readme]

Two separate ``python -m workbench run <recipe> --quiet`` processes, started here one after the other and
timed from outside (start-up and imports count):

- cold run: ``--force``, so every stage, every check and the benchmarks are redone;
- unchanged rerun: nothing changed, so stages, checks and benchmarks all come from the cache.

Each is printed beside its target and beside Olive 0.13's figures for the same model on the same machine
(measured earlier by hand, not by this script; shown only for recipes/int8.yaml, the model they are for),
then the split the run's own report gives (metrics.json read through the run model, ``Run.time``: total,
validation, benchmarks).
Exits 1 if a run fails (its exit code and last lines of stderr are printed).
Figures for ``--check-readme``: ``cold run (--force)``, ``unchanged rerun`` (seconds, timed from outside)
and ``<run> report total|validation|benchmarks`` (seconds, from metrics.json; none for a rerun that reused
all the work, whose report keeps the split of the run that did it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import check_readme  # noqa: E402
from workbench import recipe  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.results import Run, TimeSplit  # noqa: E402

COLD, RERUN = "cold run (--force)", "unchanged rerun"
RUNS = {COLD: ["--force"], RERUN: []}
TARGETS_S = {COLD: 30.0, RERUN: 3.0}  # at most
# Olive 0.13 on recipes/int8.yaml's model, same machine: measured earlier by hand, not by this script
OLIVE_RECIPE = ROOT / "recipes" / "int8.yaml"
OLIVE_S = {COLD: 15.6, RERUN: 7.7}


def timed(recipe_path: Path, flags: list[str]) -> float:
    """Seconds of one ``workbench run`` process; a failed run ends this script with exit 1."""
    command = [sys.executable, "-m", "workbench", "run", str(recipe_path), *flags, "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        print(f"FAILED: workbench run {recipe_path} {' '.join(flags)} exited {done.returncode} after {seconds:.1f} s")
        print(tail)
        raise SystemExit(1)
    return seconds


def split_row(name: str, split: TimeSplit, measured_s: float) -> tuple[str, dict[str, float]]:
    """The split's line of the table, and its figures by part (none when the run reused an earlier run's work:
    its report then keeps that run's split, not this process's)."""
    if split.reused_from is not None:
        return f"{name:<20} the report keeps the split of the run of {split.reused_from} (all reused)", {}
    parts = {"total": split.total, "validation": split.validation, "benchmarks": split.benchmarks}
    cells = [f"{seconds:7.1f} s" for seconds in parts.values()]
    startup = measured_s - split.total
    return f"{name:<20} {cells[0]:>9} {cells[1]:>11} {cells[2]:>11} {startup:7.1f} s", parts


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=OLIVE_RECIPE, help="the recipe to time (default: int8.yaml)")
    parser.add_argument("--check-readme", action="store_true", help="compare the figures with the README's claims")
    args = parser.parse_args()
    recipe_path = args.recipe.resolve()
    try:
        report = recipe.load(recipe_path).report_dir / "metrics.json"
    except WorkbenchError as exc:
        raise SystemExit(f"error: {exc}") from None
    olive = recipe_path == OLIVE_RECIPE.resolve()
    measured: dict[str, float] = {}
    split: dict[str, TimeSplit] = {}
    for name, flags in RUNS.items():
        measured[name] = timed(recipe_path, flags)
        split[name] = Run.load(report.read_text()).time
    print(f"python -m workbench run {_shown(recipe_path)} --quiet, each a new process timed from outside:")
    olive_head = "Olive 0.13 (measured earlier)" if olive else "Olive 0.13: figures only for recipes/int8.yaml"
    print(f"\n{'run':<20} {'measured':>9}   {'target':<9} {'status':<7} {olive_head}")
    for name, seconds in measured.items():
        target = f"<= {TARGETS_S[name]:g} s"
        status = "met" if seconds <= TARGETS_S[name] else "MISSED"
        versus = f"{OLIVE_S[name]:5.1f} s  (workbench: {seconds / OLIVE_S[name]:.2f}x Olive's time)" if olive else "-"
        print(f"{name:<20} {seconds:7.1f} s   {target:<9} {status:<7} {versus}")
    print(f"\nsplit given by the report ({_shown(report)} time; start-up: measured minus the report's total):")
    print(f"{'run':<20} {'total':>9} {'validation':>11} {'benchmarks':>11} {'start-up':>9}")
    for name, time_split in split.items():
        line, parts = split_row(name, time_split, measured[name])
        print(line)
        measured.update({f"{name} report {k}": v for k, v in parts.items()})
    return check_readme.verify(measured) if args.check_readme else 0


if __name__ == "__main__":
    sys.exit(main())
