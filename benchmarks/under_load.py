"""The same recipe timed on a quiet machine and beside a CPU hog, side by side: is a figure taken under load flagged?

    python benchmarks/under_load.py [--recipe recipes/engines.yaml] [--hog-seconds 600]

Runs ``python -m workbench run RECIPE --rebench`` twice (stages and checks come from the cache; only the benchmarks
are measured again): first as the machine is, then with a bounded CPU hog busy on every core (``timing.load.Hog``,
killed in a finally). Prints, for each run: whether the workbench flagged the machine as busy, PyTorch fp32's median
at batch 1 and the longest latency length, and the final int8 row's speed-up over PyTorch fp32 there with its 95%
interval. The rule it checks (exit 1 when broken): under load, either the figures stay within the quiet run's
interval or the run is flagged. When the first run itself was flagged, there is no quiet baseline to compare with:
it says so and exits 2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench import recipe  # noqa: E402
from workbench.ratio import Ratio  # noqa: E402
from workbench.results import Bench, Run  # noqa: E402
from workbench.runtimes import REFERENCE  # noqa: E402
from workbench.timing.load import Hog  # noqa: E402


def _run(path: Path) -> Bench:
    done = subprocess.run(
        [sys.executable, "-m", "workbench", "run", str(path), "--quiet", "--rebench"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"workbench run {path} exited {done.returncode}: {done.stderr.strip()}")
    bench = Run.load((recipe.load(path).report_dir / "metrics.json").read_text()).bench
    if bench is None:
        raise SystemExit(f"{path}: the recipe has benchmarks disabled")
    return bench


def _figures(bench: Bench) -> tuple[float, str, Ratio]:
    case = bench.headline
    final = [c.row for c in bench.contenders if c.stage is not None and c.precision.quantized][-1]
    reference, ratio = bench.timing(REFERENCE, case), bench.speedup(final, case)
    if ratio is None:
        raise SystemExit(f"no speed-up of {final} over {REFERENCE} at {case} in the run")
    return reference.median_ms if reference else float("nan"), final, ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "engines.yaml")
    parser.add_argument("--hog-seconds", type=float, default=600.0, help="the hog ends by itself after this")
    args = parser.parse_args()
    quiet = _run(args.recipe)
    with Hog(seconds=args.hog_seconds):
        loaded = _run(args.recipe)
    print(f"{args.recipe.name}: PyTorch fp32 median and the int8 speed-up at {quiet.headline}, as measured")
    print(f"| run | flagged busy | {REFERENCE} ms | int8 row | x {REFERENCE} [95% interval] |")
    print("|---|---|---|---|---|")
    for name, bench in (("as the machine is", quiet), ("beside a CPU hog", loaded)):
        ms, row, ratio = _figures(bench)
        print(f"| {name} | {'yes' if not bench.quiet else 'no'} | {ms:.2f} | {row} | {ratio} |")
    if not quiet.quiet:
        print("the first run was flagged busy too: no quiet baseline here (run it on a quiet machine)")
        return 2
    _, _, base = _figures(quiet)
    _, _, under = _figures(loaded)
    within = base.low is not None and base.high is not None and base.low <= under.value <= base.high
    ok = within or not loaded.quiet
    print(f"under load: {'flagged' if not loaded.quiet else 'not flagged'}; speed-up "
          f"{'within' if within else 'outside'} the quiet interval -> {'rule holds' if ok else 'RULE BROKEN'}")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
