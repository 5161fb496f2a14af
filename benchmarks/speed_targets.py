"""Where the int8 artifact stands against the performance targets, every ratio measured in this one run.

    python benchmarks/speed_targets.py [--budget 5] [--threads N] [--check-readme]

Runs recipes/int8.yaml first (cached stages are reused; its own benchmarks are skipped), then times
PyTorch fp32, PyTorch dynamic int8 and the ONNX int8 artifact on onnxruntime (default session options,
and the tuned ones when the tuning grid finds a faster identical configuration) side by side with the
same threads and inputs, and prints each measured ratio beside its target. Size share and accuracy drop
come from the int8 report's metrics.json. Figures for ``--check-readme``: the "target" column's names,
with "onnx int8 tuned" read as "onnx int8" (so a name does not depend on whether tuning won).
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import check_readme  # noqa: E402
from workbench import recipe  # noqa: E402
from workbench.model import torch_source  # noqa: E402
from workbench.runtimes import REFERENCE, TORCH_INT8  # noqa: E402
from workbench.runtimes import onnxruntime as ort_runners  # noqa: E402
from workbench.runtimes import torch as torch_runners  # noqa: E402
from workbench.timing import measure, tune  # noqa: E402

STAGE = "quantize_dynamic"  # the int8 artifact: the recipe's last stage
ONNX, TUNED = "onnx int8", "onnx int8 tuned"


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
    metrics = json.loads((parsed.report_dir / "metrics.json").read_text())
    int8_path = parsed.report_dir / f"{STAGE}.onnx"
    inputs, vocab = parsed.model.inputs, parsed.model.vocab_size
    source = torch_source(parsed)[0]
    torch_runners.set_threads(args.threads)
    names = (source.module, source.input_names, source.output_name)
    contenders = [
        torch_runners.fp32(REFERENCE, *names),
        torch_runners.dynamic_int8(TORCH_INT8, *names),
        ort_runners.load_file(int8_path, args.threads, name=ONNX),
    ]
    cases = [measure.Case("b1_l256", 1, 256), measure.Case("b64_l256", 64, 256)]
    tuning = tune.tune(int8_path, STAGE, cases[0], inputs, threads=args.threads, vocab_size=vocab, budget_s=args.budget)
    options = dict(tuning.best.options)
    tuned = options != tuning.default.options
    if tuned:
        contenders.append(ort_runners.load_file(int8_path, options.pop("intra_op_num_threads"), options, name=TUNED))
    print(f"session tuning: best identical configuration {tuning.best.options} ({tuning.gain:.2f}x the default)")
    timings = measure.run_cases(contenders, cases, inputs, vocab_size=vocab, budget_s=args.budget)
    median = {(t.contender, t.case): t.median_ms for t in timings}
    print(f"{args.threads} threads, {args.budget:g} s per case; medians (ms):")
    for t in timings:
        print(f"  {t.contender:<16} {t.case:<9} {t.median_ms:8.3f}  (p90 {t.p90_ms:.3f}, {t.runs} runs)")
    best = TUNED if tuned else ONNX
    quant = next(s for s in metrics["stages"] if s["stage"] == STAGE)
    check = next(e["check"] for e in quant["engines"] if e["engine"] == "onnxruntime")
    rows = [
        (f"{best} vs pytorch fp32, b1 l256", median[(REFERENCE, "b1_l256")] / median[(best, "b1_l256")], ">=", 5.0),
        (f"{best} vs pytorch int8, b1 l256", median[(TORCH_INT8, "b1_l256")] / median[(best, "b1_l256")], ">=", 3.0),
        (
            f"{ONNX} throughput vs pytorch fp32, b64 l256",
            median[(REFERENCE, "b64_l256")] / median[(ONNX, "b64_l256")],
            ">=",
            3.0,
        ),
        ("int8 size as a share of fp32", quant["artifact"]["share_of_fp32"], "<=", 0.26),
        ("accuracy drop vs pytorch fp32, points", 100 * check["accuracy_drop"], "<=", 0.5),
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
