"""The int8 chain on every engine, side by side: exactness, accuracy and speed of each artifact row.

    python benchmarks/engines.py [--rebench] [--recipe recipes/engines.yaml] [--check-readme]

Runs ``python -m workbench run recipes/engines.yaml --quiet`` (stages, checks and benchmarks come from
the cache when nothing changed; ``--rebench`` measures the benchmarks again), then prints one table from
its reports/engines/metrics.json: a row per artifact on each engine (``<engine>:<stage>``, the engines of
one stage next to each other) after the PyTorch fp32 and int8 references. Columns: the precision that
really ran (as the engine reports it), max abs error, top-1 agreement and accuracy against PyTorch fp32
on the evaluation set, then for the headline case (batch 1 at the longest length) and the throughput
case: median latency and the speed-up over PyTorch fp32 and over PyTorch int8 (all timed in one run,
same threads and inputs). ``*`` marks the fastest row of each case, also named below the table.
The table is markdown, to be quoted as it is.

Exits 1 if the run failed a stage's thresholds (the table is still printed), 2 if it produced no report.
Figures for ``--check-readme``: ``<row> <column>`` for each number in the table, the column named as in
its header, e.g. ``onnxruntime:quantize_dynamic b1_l256 ms`` or ``openvino:export agreement`` (a fraction).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import check_readme  # noqa: E402
from workbench import recipe  # noqa: E402
from workbench.runtimes import REFERENCE, TORCH_INT8  # noqa: E402


def rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The references, then every artifact row in stage order, the engines of one stage together."""
    bench = metrics.get("bench") or {}
    precisions = bench.get("precisions", {})
    ref_accuracy = metrics["reference"]["accuracy"]
    out: list[dict[str, Any]] = [
        {"row": REFERENCE, "precision": precisions.get(REFERENCE, "fp32 (eager)"), "accuracy": ref_accuracy},
        {"row": TORCH_INT8, "precision": precisions.get(TORCH_INT8, "-")},
    ]
    for stage in metrics["stages"]:
        for engine in stage["engines"]:
            row = {"row": engine["row"], "precision": engine["precision"]}
            if engine["not_applicable"]:
                row["refused"] = engine["not_applicable"]
            check = engine.get("check")
            if check:
                row.update(max_abs_error=check["max_abs_error"], agreement=check["agreement"])
                row.update(accuracy=check["accuracy"], passed=engine["passed"])
            out.append(row)
        if not stage["engines"] and stage["error"]:
            out.append({"row": stage["stage"], "precision": "-", "refused": f"stage failed: {stage['error']}"})
    return out


def table(metrics: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    """The markdown lines, and every figure in them by ``<row> <column>``."""
    bench = metrics.get("bench")
    lines, figures = [], {}
    cases = []
    if bench:
        headline = bench["headline_case"]
        throughput = next((c["name"] for c in reversed(bench["cases"]) if c["batch"] > 1), bench["cases"][-1]["name"])
        cases = [headline] + ([throughput] if throughput != headline else [])
    timing = {(t["contender"], t["case"]): t for t in (bench or {}).get("timings", [])}
    fp32 = (bench or {}).get("speedup_vs_pytorch_fp32", {})
    int8 = (bench or {}).get("speedup_vs_pytorch_int8", {})
    fastest = {
        case: min((t for (_, c), t in timing.items() if c == case), key=lambda t: t["median_ms"])["contender"]
        for case in cases
    }
    header = ["row", "max abs err", "agreement", "accuracy"]
    for case in cases:
        header += [f"{case} ms", f"{case} x fp32", f"{case} x int8"]
    header.append("precision that ran")
    body = []
    for row in rows(metrics):
        name = row["row"]
        cells = [name]
        for key, text in (
            ("max_abs_error", "{:.2e}"),
            ("agreement", "{:.2%}"),
            ("accuracy", "{:.2%}"),
        ):
            value = row.get(key)
            cells.append("-" if value is None else text.format(value))
            if value is not None:
                figures[f"{name} {key.replace('_', ' ').replace('error', 'err')}"] = value
        for case in cases:
            t = timing.get((name, case))
            if t is None:
                cells += ["-", "-", "-"]
                continue
            mark = ("*" if fastest[case] == name else "") + ("" if t["stable"] else "~")
            cells.append(f"{t['median_ms']:.2f}{mark}")
            figures[f"{name} {case} ms"] = t["median_ms"]
            for label, table_ in (("fp32", fp32), ("int8", int8)):
                ratio = table_.get(name, {}).get(case)
                cells.append("-" if ratio is None else f"{ratio:.2f}x")
                if ratio is not None:
                    figures[f"{name} {case} x {label}"] = ratio
        precision = row["precision"]
        if "refused" in row:
            precision = f"not run: {row['refused']}"
        elif row.get("passed") is False:
            precision += " (FAILED its thresholds)"
        cells.append(precision)
        body.append(cells)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header) - 1)]

    def aligned(cells: list[str]) -> str:  # the row name left, figures right, the precision as it is
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join([*padded, cells[-1]]) + " |"

    lines.append(aligned(header))
    lines.append("|" + "|".join([":" + "-" * (widths[0] + 1)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|---|")
    lines += [aligned(cells) for cells in body]
    lines.append("")
    for case in cases:
        t = timing[(fastest[case], case)]
        lines.append(
            f"fastest at {case}: {fastest[case]}, {t['median_ms']:.2f} ms median ({t['samples_per_s']:.0f} samples/s)"
        )
    return lines, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "engines.yaml")
    parser.add_argument("--rebench", action="store_true", help="measure the benchmarks again instead of the cache")
    parser.add_argument("--check-readme", action="store_true", help="compare the figures with the README's claims")
    args = parser.parse_args()
    command = [sys.executable, "-m", "workbench", "run", str(args.recipe), "--quiet"]
    done = subprocess.run(
        command + (["--rebench"] if args.rebench else []),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 1):
        print(f"workbench run {args.recipe} exited {done.returncode}: {done.stderr.strip()}", file=sys.stderr)
        return 2
    parsed = recipe.load(args.recipe)
    metrics = json.loads((parsed.report_dir / "metrics.json").read_text())
    bench, env = metrics.get("bench"), metrics["environment"]
    engines = ", ".join(f"{r['engine']} {env.get(r['engine'], '?')}" for r in metrics["runtimes"])
    print(f"{metrics['recipe']}: {metrics['verdict']}; engines: {engines}; torch {env['torch']}")
    print(f"{env['cpu']}, {env['threads']} threads; {metrics['reference']['samples']} evaluation samples")
    if bench:
        when = f"cached, measured {bench['measured_at']}" if bench["cached"] else f"measured {bench['measured_at']}"
        print(f"benchmarks {when}, up to {bench['budget_seconds']:g} s per case, all rows in one run")
        print("x fp32 / x int8: PyTorch fp32's / PyTorch int8's median over the row's (above 1: the row is faster)")
    else:
        print("no benchmarks in this report (bench disabled in the recipe)")
    lines, figures = table(metrics)
    print()
    print("\n".join(lines))
    if bench and any(not t["stable"] for t in bench["timings"]):
        print("~: median not stable within 2% when the budget ran out")
    status = 0 if done.returncode == 0 else 1
    if status:
        print(f"\nthe run FAILED a stage's thresholds: see {parsed.report_dir / 'report.md'}")
    if args.check_readme:
        status = max(status, check_readme.verify(figures))
    return status


if __name__ == "__main__":
    sys.exit(main())
