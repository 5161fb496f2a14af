"""Where the int8 artifact stands against the performance targets, every ratio measured in this one run.

    python benchmarks/speed_targets.py [--budget 5] [--threads N] [--check-readme]

Runs recipes/int8.yaml first (cached stages are reused; its own benchmarks are skipped), then times
PyTorch fp32, PyTorch dynamic int8 and the ONNX int8 artifact on onnxruntime (default session options,
and the tuned ones when the tuning grid finds a faster identical configuration) side by side with the
same threads and inputs, and prints each measured ratio beside its target. Size share and accuracy drop
come from the int8 report's metrics.json, read through the run model (``workbench.results.Run``).
Figures for ``--check-readme``: the "target" column's names, with "onnx int8 tuned" read as "onnx int8"
(so a name does not depend on whether tuning won).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import check_readme  # noqa: E402
from workbench import recipe  # noqa: E402
from workbench.model import torch_source  # noqa: E402
from workbench.results import Case, Run, Tuning  # noqa: E402
from workbench.runtimes import ENGINES, REFERENCE, TORCH_INT8, Runner  # noqa: E402
from workbench.runtimes import onnxruntime as ort_runners  # noqa: E402
from workbench.runtimes import torch as torch_runners  # noqa: E402
from workbench.timing import measure, tune  # noqa: E402

STAGE = "quantize_dynamic"  # the int8 artifact: the recipe's last stage
ONNX, TUNED = "onnx int8", "onnx int8 tuned"
ENGINE = "onnxruntime"


def from_report(run: Run) -> tuple[str, float, float]:
    """The int8 artifact's file name, its size as a share of the exported fp32 file, and its accuracy drop."""
    quant = run.record(STAGE)
    check = next((c.check for c in quant.checks if c.engine == ENGINE), None)
    if quant.artifact is None or quant.share_of_export is None or check is None:
        raise SystemExit(f"{run.recipe}: stage {STAGE} has no artifact or no {ENGINE} check in its report")
    return quant.artifact.file, quant.share_of_export, check.comparison.accuracy_drop


def references(parsed: recipe.Recipe, threads: int) -> list[Runner]:
    """PyTorch fp32 and PyTorch dynamic int8 of the recipe's model."""
    source = torch_source(parsed)[0]
    torch_runners.set_threads(threads)
    names = (source.module, source.input_names, source.output_name)
    return [torch_runners.fp32(REFERENCE, *names), torch_runners.dynamic_int8(TORCH_INT8, *names)]


def tuned_runner(
    parsed: recipe.Recipe, path: Path, case: Case, *, threads: int, budget_s: float
) -> tuple[Tuning, Runner | None]:
    """The engine's tuning grid on ``path`` at ``case``, and a runner named TUNED when a faster identical
    configuration than the default won (else None)."""
    engine = ENGINES[ENGINE]
    assert engine.tuner is not None, f"{ENGINE} has no tuning hook"
    params = next((r.params for r in parsed.runtimes if r.name == ENGINE), engine.params())
    tuning = tune.tune(engine, params, path, STAGE, case, parsed.model.feed, threads=threads, budget_s=budget_s)
    if tuning.best.options == tuning.default.options:
        return tuning, None
    runner = engine.tuner.load(path, params, threads, tuning.best.options)
    runner.name = TUNED
    return tuning, runner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per case (default 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "int8.yaml")
    parser.add_argument("--check-readme", action="store_true", help="compare the figures with the README's claims")
    args = parser.parse_args()
    done = subprocess.run(
        [sys.executable, "-m", "workbench", "run", str(args.recipe), "--no-bench", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"workbench run {args.recipe} exited {done.returncode}: {done.stderr.strip()}")
    parsed = recipe.load(args.recipe)
    file, share, drop = from_report(Run.load((parsed.report_dir / "metrics.json").read_text()))
    int8_path = parsed.report_dir / file
    feed = parsed.model.feed
    contenders = references(parsed, args.threads) + [ort_runners.load_file(int8_path, args.threads, name=ONNX)]
    cases = [Case(batch=1, length=256), Case(batch=64, length=256)]
    tuning, tuned = tuned_runner(parsed, int8_path, cases[0], threads=args.threads, budget_s=args.budget)
    contenders += [tuned] if tuned else []
    print(f"session tuning: best identical configuration {tuning.best.options} ({tuning.gain:.2f}x the default)")
    timings, loads = measure.run_cases(contenders, cases, feed, budget_s=args.budget, threads=args.threads)
    median = {(t.contender, t.case.name): t.median_ms for t in timings}
    print(f"{args.threads} threads, {args.budget:g} s per case; medians (ms):")
    for t in timings:
        print(f"  {t.contender:<16} {t.case.name:<9} {t.median_ms:8.3f}  (p90 {t.p90_ms:.3f}, {t.runs} runs)")
    for case_load in loads:  # a figure from a busy stretch is said to be one
        print(f"  machine while timing {case_load.case.name if case_load.case else '?'}: {case_load.reason}")
    best = TUNED if tuned else ONNX
    rows = [
        (f"{best} vs pytorch fp32, b1 l256", median[(REFERENCE, "b1_l256")] / median[(best, "b1_l256")], ">=", 5.0),
        (f"{best} vs pytorch int8, b1 l256", median[(TORCH_INT8, "b1_l256")] / median[(best, "b1_l256")], ">=", 3.0),
        (
            f"{ONNX} throughput vs pytorch fp32, b64 l256",
            median[(REFERENCE, "b64_l256")] / median[(ONNX, "b64_l256")],
            ">=",
            3.0,
        ),
        ("int8 size as a share of fp32", share, "<=", 0.26),
        ("accuracy drop vs pytorch fp32, points", 100 * drop, "<=", 0.5),
    ]
    print("\ntarget                                              measured   target   status")
    for name, value, op, target in rows:
        met = value >= target if op == ">=" else value <= target
        print(f"{name:<50} {value:9.3f}   {op} {target:<5g}  {'met' if met else 'MISSED'}")
    # figure names stay the same whether or not tuning won: "onnx int8 tuned" reads "onnx int8" here
    figures = {name.replace(TUNED, ONNX): value for name, value, _, _ in rows}
    return check_readme.verify(figures) if args.check_readme else 0


if __name__ == "__main__":
    sys.exit(main())
