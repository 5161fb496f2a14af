"""Where the int8 artifact stands against the performance targets, every ratio measured in this one run.

    python benchmarks/speed_targets.py [--budget 5]

Runs recipes/int8.yaml first (cached stages are reused; its own benchmarks are skipped), then times
PyTorch fp32, PyTorch dynamic int8 and the ONNX int8 artifact (default session options, and the
tuned ones when the tuning grid finds a faster identical configuration) side by side with the same
threads and inputs, and prints each measured ratio beside its target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench import bench, pipeline, recipe, tune  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per case (default 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    recipe_path = ROOT / "recipes" / "int8.yaml"
    subprocess.run(
        [sys.executable, "-m", "workbench", "run", str(recipe_path), "--no-bench", "--quiet"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    parsed = recipe.load(recipe_path)
    metrics = json.loads((parsed.report_dir / "metrics.json").read_text())
    int8_path = parsed.report_dir / "quantize_dynamic.onnx"
    module = pipeline.torch_source(parsed)[0].module
    contenders = [
        bench.torch_fp32(module, args.threads),
        bench.torch_int8(module, args.threads),
        bench.onnx_file("onnx int8", int8_path, args.threads),
    ]
    cases = [bench.Case("b1_l256", 1, 256), bench.Case("b64_l256", 64, 256)]
    tuning = tune.tune(
        int8_path, cases[0], threads=args.threads, vocab_size=1000, batch_first=False, budget_s=args.budget
    )
    options = tuning.best.options
    tuned = options != tuning.default.options
    if tuned:
        contenders.append(bench.onnx_file("onnx int8 tuned", int8_path, options["intra_op_num_threads"], options))
    print(f"session tuning: best identical configuration {options} ({tuning.gain:.2f}x the default)")
    timings = bench.run_cases(contenders, cases, vocab_size=1000, batch_first=False, budget_s=args.budget)
    median = {(t.contender, t.case): t.median_ms for t in timings}
    print(f"{args.threads} threads, {args.budget:g} s per case; medians (ms):")
    for t in timings:
        print(f"  {t.contender:<16} {t.case:<9} {t.median_ms:8.3f}  (p90 {t.p90_ms:.3f}, {t.runs} runs)")
    best = "onnx int8 tuned" if tuned else "onnx int8"
    quant = next(s for s in metrics["stages"] if s["stage"] == "quantize_dynamic")
    rows = [
        (
            f"{best} vs pytorch fp32, b1 l256",
            median[("pytorch fp32", "b1_l256")] / median[(best, "b1_l256")],
            ">=",
            5.0,
        ),
        (
            f"{best} vs pytorch int8, b1 l256",
            median[("pytorch int8", "b1_l256")] / median[(best, "b1_l256")],
            ">=",
            3.0,
        ),
        (
            "onnx int8 throughput vs pytorch fp32, b64 l256",
            median[("pytorch fp32", "b64_l256")] / median[("onnx int8", "b64_l256")],
            ">=",
            3.0,
        ),
        ("int8 size as a share of fp32", quant["artifact"]["share_of_fp32"], "<=", 0.26),
        ("accuracy drop vs pytorch fp32, points", 100 * quant["check"]["accuracy_drop"], "<=", 0.5),
    ]
    print("\ntarget                                              measured   target   status")
    for name, value, op, target in rows:
        met = value >= target if op == ">=" else value <= target
        print(f"{name:<50} {value:9.3f}   {op} {target:<5g}  {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
