"""Time and peak memory of validation as the evaluation set grows: ``run RECIPE --no-bench`` at 2k, 8k and 32k samples.

Each size is a copy of the recipe in a temporary folder (its ``root`` pointing back at the project, its reports and
cache in the temporary folder) with ``data.synthetic.size`` and ``data.batch_size`` changed, run as a child process;
its peak RSS is the child's own ``ru_maxrss`` (``os.wait4``). A first run at a small size fills the stage entries
(export, simplify, optimize, quantize do not depend on the set), so the measured runs compute the reference and
every check on the whole set and nothing else changes between them. Prints each size beside the targets of issue
17: RSS at the largest size within 10% of RSS at the smallest, and time linear in the samples: a fixed start-up cost
plus a constant cost per added sample (the marginal seconds per 1,000 samples, size to size, agree within 25%).
Timings are wall times: run it on a quiet machine (the load average is printed).

Why a batch size of 8 by default: validation groups equal-length samples into batches of up to ``data.batch_size``
within each window of ~4,096 samples, and an engine's working memory follows the largest batch it ran (onnxruntime
keeps its arena grown). The synthetic set spreads 2,000 samples over 249 lengths, ~8 per length, so at the recipe's
64 a small set runs batches of ~8 and a large one batches of ~30: memory then grows with how full the batches are,
up to ``batch_size`` x the longest sample, not with the set. At 8, batches are full at every size and the figures
compare set sizes alone. ``--batch-size 64`` shows the other effect (the table prints each size's largest batch).

Figures for ``--check-readme`` (see benchmarks/check_readme.py): ``scale peak RSS MB at <samples>``,
``scale peak RSS largest / smallest``, ``scale marginal seconds per 1k samples, least`` and ``, most`` (between
consecutive sizes), ``scale marginal cost largest / smallest``.

With ``--ray`` the same sizes run with each validation pass split across the workers of a Ray cluster started here
for the purpose (``ray start --head``, one worker per core; ``run --ray auto``): the table then adds the largest
worker's peak RSS, which each worker measures itself, and the ratios are given for the run's own process and for the
workers. Its figures are not README claims.

    python benchmarks/scale.py [--recipe recipes/int8.yaml] [--sizes 2000 8000 32000] [--batch-size 8] [--ray]
                               [--check-readme]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import check_readme  # noqa: E402

RSS_TARGET = 1.10  # peak RSS at the largest size over the smallest's
LINEAR_WITHIN = 1.25  # the largest marginal cost (seconds per added sample, size to size) over the smallest
WARM_SIZE = 100


class Measured(NamedTuple):
    samples: int
    largest_batch: int
    seconds: float  # wall time of the child, start to exit
    validation: float  # what the report says validation took
    peak_rss_mb: float
    exit_code: int
    worker_rss_mb: float | None = None  # with --ray: the largest Ray worker's peak RSS


def sized_recipe(recipe: Path, samples: int, folder: Path, batch_size: int | None = None) -> Path:
    """A copy of ``recipe`` with ``samples`` synthetic samples (and ``batch_size``, if given), its root the project,
    its reports and cache in ``folder``."""
    document = yaml.safe_load(recipe.read_text())
    synthetic = (document.get("data") or {}).get("synthetic")
    if synthetic is None:
        raise SystemExit(f"{recipe}: needs a synthetic data set (data.synthetic) to resize")
    synthetic["size"] = samples
    if batch_size is not None:
        document["data"]["batch_size"] = batch_size
    document["root"] = str((recipe.parent / document.get("root", ".")).resolve())
    document["name"] = f"{document.get('name', recipe.stem)}_{samples}"
    document["reports"] = str(folder / "reports")
    document["cache"] = str(folder / "cache")
    path = folder / f"{document['name']}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def measure(recipe: Path, threads: int | None, ray: bool = False) -> Measured:
    """Run ``workbench run RECIPE --no-bench --quiet`` in a child process: wall time and the child's peak RSS."""
    from workbench import recipe as recipes
    from workbench.results import Run

    command = [sys.executable, "-m", "workbench", "run", str(recipe), "--no-bench", "--quiet"]
    command += ["--threads", str(threads)] if threads else []
    command += ["--ray", "auto"] if ray else []
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    parsed = recipes.load(recipe)
    run = Run.load((parsed.report_dir / "metrics.json").read_text())
    synthetic = parsed.settings.data.synthetic
    assert synthetic is not None, f"{recipe}: scale.py writes a synthetic set"
    samples = synthetic.size
    largest = largest_batch(parsed)
    split = run.environment.split
    return Measured(samples, largest, seconds, run.time.validation, usage.ru_maxrss / 1024, child.returncode,
                    split.peak_worker_rss_mb if split else None)


def largest_batch(recipe) -> int:
    """The largest equal-length batch validation runs on this recipe's set: per window, samples of one length, up to
    ``data.batch_size``."""
    from workbench.evaluation import evaluation_of

    ev = evaluation_of(recipe)
    largest = 0
    for _, window in ev.tokens.windows(ev.batch_size):
        counts = np.bincount([len(sample.tokens) for sample in window])
        largest = max(largest, int(min(counts.max(), ev.batch_size)))
    return largest


def show(rows: list[Measured]) -> dict[str, float]:
    """Print the table and the targets; return the figures (for --check-readme)."""
    first, last = rows[0], rows[-1]
    print(f"{'samples':>8} {'largest batch':>14} {'seconds':>8} {'validation s':>13} {'s / 1k samples':>15} "
          f"{'peak RSS MB':>12} {'RSS / first':>12}")
    figures = {}
    for m in rows:
        print(f"{m.samples:>8,} {m.largest_batch:>14} {m.seconds:>8.1f} {m.validation:>13.1f} "
              f"{1000 * m.seconds / m.samples:>15.2f} {m.peak_rss_mb:>12.0f} {m.peak_rss_mb / first.peak_rss_mb:>12.2f}"
              + ("" if m.exit_code == 0 else f"  exit {m.exit_code}"))
        figures[f"scale peak RSS MB at {m.samples}"] = m.peak_rss_mb
    rss = last.peak_rss_mb / first.peak_rss_mb
    figures["scale peak RSS largest / smallest"] = rss
    print(f"peak RSS at {last.samples:,} / at {first.samples:,}: {rss:.2f} "
          f"(target <= {RSS_TARGET:.2f}: {'met' if rss <= RSS_TARGET else 'NOT met'})")
    if first.worker_rss_mb and last.worker_rss_mb:
        print("Ray workers' largest peak RSS MB: " + ", ".join(f"{m.worker_rss_mb:.0f}" for m in rows))
        workers = last.worker_rss_mb / first.worker_rss_mb
        print(f"Ray workers' peak RSS at {last.samples:,} / at {first.samples:,}: {workers:.2f} "
              f"(target <= {RSS_TARGET:.2f}: {'met' if workers <= RSS_TARGET else 'NOT met'})")
    marginal = [1000 * (b.seconds - a.seconds) / (b.samples - a.samples) for a, b in zip(rows, rows[1:])]
    print("marginal seconds per 1k samples between sizes: " + ", ".join(f"{m:.2f}" for m in marginal))
    if marginal:
        figures["scale marginal seconds per 1k samples, least"] = min(marginal)
        figures["scale marginal seconds per 1k samples, most"] = max(marginal)
    if len(marginal) >= 2 and min(marginal) > 0:
        spread = max(marginal) / min(marginal)
        figures["scale marginal cost largest / smallest"] = spread
        print(f"largest / smallest marginal cost: {spread:.2f} "
              f"(linear: <= {LINEAR_WITHIN:.2f}: {'met' if spread <= LINEAR_WITHIN else 'NOT met'})")
    return figures


@contextlib.contextmanager
def local_ray(wanted: bool) -> Iterator[None]:
    """A Ray cluster on this machine for the runs (``ray start --head``, one CPU per core), stopped afterwards."""
    if not wanted:
        yield
        return
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        raise SystemExit('--ray needs Ray: pip install -e ".[ray]"')
    subprocess.run([ray, "start", "--head", f"--num-cpus={os.cpu_count()}", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        subprocess.run([ray, "stop"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes/int8.yaml")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--threads", type=int, default=None, help="threads for every engine (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="data.batch_size for every size (default 8: full batches at every size; see above)")
    parser.add_argument("--ray", action="store_true", help="split validation across a Ray cluster started here")
    parser.add_argument("--check-readme", action="store_true", help="compare the figures with the README's claims")
    args = parser.parse_args()
    if args.ray and args.check_readme:
        parser.error("--check-readme checks the figures of one process; run it without --ray")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="wb-scale-") as tmp, local_ray(args.ray):
        folder = Path(tmp)
        warm = measure(sized_recipe(args.recipe, WARM_SIZE, folder, args.batch_size), args.threads)
        print(f"warm-up at {WARM_SIZE} samples (fills the stage entries): {warm.seconds:.1f} s, "
              f"{warm.peak_rss_mb:.0f} MB", flush=True)
        rows = []
        for size in sorted(args.sizes):
            rows.append(measure(sized_recipe(args.recipe, size, folder, args.batch_size), args.threads, args.ray))
            print(f"  {size:,} samples: {rows[-1].seconds:.1f} s, {rows[-1].peak_rss_mb:.0f} MB", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    figures = show(rows)
    status = 0 if all(m.exit_code == 0 for m in rows) else 1
    if args.check_readme:
        status = max(status, check_readme.verify(figures))
    return status


if __name__ == "__main__":
    sys.exit(main())
