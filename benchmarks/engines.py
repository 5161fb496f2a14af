"""The int8 chain on every engine, side by side: exactness, accuracy and speed of each artifact row.

    python benchmarks/engines.py [--rebench] [--recipe recipes/engines.yaml] [--check-readme]

Runs ``python -m workbench run recipes/engines.yaml --quiet`` (stages, checks and benchmarks come from
the cache when nothing changed; ``--rebench`` measures the benchmarks again), then prints one table from
its reports/engines/metrics.json, read through the run model (``workbench.results.Run``): a row per
artifact on each engine (``<engine>:<stage>``, the engines of one stage next to each other) after the
PyTorch fp32 and int8 references. Columns: the precision that really ran (as the engine reports it), max
abs error, top-1 agreement and accuracy against PyTorch fp32 on the evaluation set, then for the headline
case (batch 1 at the longest length) and the throughput case: median latency and the speed-up over
PyTorch fp32 and over PyTorch int8 (all timed in one run, same threads and inputs). ``*`` marks the
fastest row of each case, also named below the table. The table is markdown, to be quoted as it is.

Exits 1 if the run failed a stage's thresholds (the table is still printed), 2 if it produced no report.
Figures for ``--check-readme``: ``<row> <column>`` for each number in the table, the column named as in
its header, e.g. ``onnxruntime:quantize_dynamic b1_l256 ms`` or ``openvino:export agreement`` (a fraction).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import check_readme  # noqa: E402
from workbench import recipe  # noqa: E402
from workbench.results import Bench, Case, EngineCheck, Run  # noqa: E402
from workbench.runtimes import REFERENCE, TORCH_INT8  # noqa: E402

# the exactness columns: (figure name in --check-readme, format)
EXACTNESS = (("max abs err", "{:.2e}"), ("agreement", "{:.2%}"), ("accuracy", "{:.2%}"))


@dataclass(frozen=True)
class Row:
    """One line of the table: a reference or an artifact on one engine, and what its check measured."""

    row: str
    precision: str  # what really ran, as the engine reports it
    max_abs_error: float | None = None
    agreement: float | None = None
    accuracy: float | None = None
    passed: bool | None = None
    refused: str | None = None  # why it did not run

    def exactness(self) -> tuple[float | None, ...]:
        """The figures of the EXACTNESS columns, in order."""
        return self.max_abs_error, self.agreement, self.accuracy


def _artifact_row(check: EngineCheck) -> Row:
    if check.not_applicable:
        return Row(check.row, check.precision, refused=check.not_applicable)
    if check.error is not None:
        return Row(check.row, check.precision, refused=f"engine error: {check.error}")
    if check.check is None:
        return Row(check.row, check.precision)
    found = check.check.comparison
    return Row(check.row, check.precision, found.max_abs_error, found.agreement, found.accuracy, check.passed)


def rows(run: Run) -> list[Row]:
    """The references, then every artifact row in stage order, the engines of one stage together."""
    ran_as = {c.row: c.ran_as for c in run.bench.contenders} if run.bench else {}
    out = [
        Row(REFERENCE, ran_as.get(REFERENCE, "fp32 (eager)"), accuracy=run.reference.accuracy),
        Row(TORCH_INT8, ran_as.get(TORCH_INT8, "-")),
    ]
    for record in run.stages:
        out += [_artifact_row(check) for check in record.checks]
        if not record.checks and record.error:
            out.append(Row(record.stage, "-", refused=f"stage failed: {record.error}"))
    return out


def timed_cases(bench: Bench | None) -> list[Case]:
    """The headline case, then the throughput case (the last with a batch above 1) when it differs."""
    if bench is None:
        return []
    throughput = next((c for c in reversed(bench.cases) if c.batch > 1), bench.cases[-1])
    return [bench.headline] + ([throughput] if throughput != bench.headline else [])


def fastest(bench: Bench, case: Case) -> str:
    """The row with the lowest median at ``case`` (the first of equals)."""
    return min((t for t in bench.timings if t.case == case), key=lambda t: t.median_ms).contender


def _speed_cells(bench: Bench, row: str, case: Case, figures: dict[str, float]) -> list[str]:
    """Median, x fp32 and x int8 of ``row`` at ``case``; each figure also goes into ``figures``."""
    timing = bench.timing(row, case)
    if timing is None:
        return ["-", "-", "-"]
    mark = ("*" if fastest(bench, case) == row else "") + ("" if timing.stable else "~")
    figures[f"{row} {case.name} ms"] = timing.median_ms
    cells = [f"{timing.median_ms:.2f}{mark}"]
    for label, baseline in (("fp32", REFERENCE), ("int8", TORCH_INT8)):
        ratio = bench.speedup(row, case, baseline)
        cells.append("-" if ratio is None else f"{ratio.value:.2f}x")
        if ratio is not None:
            figures[f"{row} {case.name} x {label}"] = ratio.value
    return cells


def _precision_cell(row: Row) -> str:
    if row.refused is not None:
        return f"not run: {row.refused}"
    return row.precision + (" (FAILED its thresholds)" if row.passed is False else "")


def _markdown(header: list[str], body: list[list[str]]) -> list[str]:
    """The row name left, figures right, the precision (last column) as it is."""
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header) - 1)]

    def aligned(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join([*padded, cells[-1]]) + " |"

    rule = "|" + "|".join([":" + "-" * (widths[0] + 1)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|---|"
    return [aligned(header), rule, *(aligned(cells) for cells in body)]


def table(run: Run) -> tuple[list[str], dict[str, float]]:
    """The markdown lines, and every figure in them by ``<row> <column>``."""
    bench, cases = run.bench, timed_cases(run.bench)
    figures: dict[str, float] = {}
    header = ["row", *(name for name, _ in EXACTNESS)]
    for case in cases:
        header += [f"{case.name} ms", f"{case.name} x fp32", f"{case.name} x int8"]
    header.append("precision that ran")
    body = []
    for row in rows(run):
        cells = [row.row]
        for (name, text), value in zip(EXACTNESS, row.exactness()):
            cells.append("-" if value is None else text.format(value))
            if value is not None:
                figures[f"{row.row} {name}"] = value
        for case in cases:
            assert bench is not None
            cells += _speed_cells(bench, row.row, case, figures)
        body.append([*cells, _precision_cell(row)])
    lines = [*_markdown(header, body), ""]
    for case in cases:
        assert bench is not None
        best = fastest(bench, case)
        t = bench.timing(best, case)
        assert t is not None
        lines.append(f"fastest at {case.name}: {best}, {t.median_ms:.2f} ms median ({t.samples_per_s:.0f} samples/s)")
    return lines, figures


def heading(run: Run) -> list[str]:
    """What ran where: the verdict, engine versions, machine, and where the timings come from."""
    env, bench = run.environment, run.bench
    engines = ", ".join(f"{r.engine} {env.versions.get(r.engine, '?')}" for r in run.runtimes)
    lines = [
        f"{run.recipe}: {run.verdict}; engines: {engines}; torch {env.versions.get('torch', '?')}",
        f"{env.cpu}, {env.threads} threads; {run.reference.samples} evaluation samples",
    ]
    if bench is None:
        return [*lines, "no benchmarks in this report (bench disabled in the recipe)"]
    when = f"cached, measured {bench.measured_at}" if bench.cached else f"measured {bench.measured_at}"
    return [
        *lines,
        f"benchmarks {when}, up to {bench.budget_seconds:g} s per case, all rows in one run",
        "x fp32 / x int8: PyTorch fp32's / PyTorch int8's median over the row's (above 1: the row is faster)",
    ]


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
    run = Run.load((parsed.report_dir / "metrics.json").read_text())
    print("\n".join(heading(run)))
    lines, figures = table(run)
    print()
    print("\n".join(lines))
    if run.bench and any(not t.stable for t in run.bench.timings):
        print("~: median not stable within 2% when the budget ran out")
    status = 0 if done.returncode == 0 else 1
    if status:
        print(f"\nthe run FAILED a stage's thresholds: see {parsed.report_dir / 'report.md'}")
    if args.check_readme:
        status = max(status, check_readme.verify(figures))
    return status


if __name__ == "__main__":
    sys.exit(main())
