"""Wall time of `python -m workbench run recipes/int8.yaml`: a cold run (--force) and cached reruns.

The cached-rerun target is about the pipeline (stages and checks come from the cache): it is timed
with --no-bench. Benchmarks are never cached, so a rerun with them is printed for information.

    python benchmarks/recipe_speed.py [--recipe recipes/int8.yaml]

Both runs are separate processes started here one after the other, so start-up and imports count.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"cold run (--force)": 90.0, "cached rerun, --no-bench": 10.0, "cached rerun with benchmarks": None}


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "workbench", "run", *args, "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"workbench run {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/int8.yaml")
    args = parser.parse_args()
    measured = {
        "cold run (--force)": timed([args.recipe, "--force"]),
        "cached rerun, --no-bench": timed([args.recipe, "--no-bench"]),
        "cached rerun with benchmarks": timed([args.recipe]),
    }
    for name, seconds in measured.items():
        target = TARGETS[name]
        verdict = (
            "(no target: benchmarks are never cached)"
            if target is None
            else (f"target < {target:.0f} s   {'met' if seconds < target else 'MISSED'}")
        )
        print(f"{name:<30} {seconds:6.1f} s   {verdict}")


if __name__ == "__main__":
    main()
