"""``workbench compare``: one table across the report folders of several runs, with the change between them.

Every figure is read through the run model (``Run.load``), never by string keys. Sizes and latencies change
as ratios (last / first), shares and accuracies in points; speed-ups, themselves ratios, compare as ratios.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from pydantic import ValidationError

from workbench.errors import InputError
from workbench.results import Run
from workbench.runtimes import REFERENCE

FIGURES = {  # figure -> (how it is shown, how two values change, what the column means)
    "bytes": ("{:,.0f}", "ratio", "file size, bytes"),
    "of export": ("{:.1%}", "points", "size as a share of the run's exported fp32 file"),
    "accuracy": ("{:.2%}", "points", "accuracy on the run's evaluation set"),
    "agreement": ("{:.2%}", "points", "top-1 agreement with PyTorch fp32"),
    "latency ms": ("{:.2f}", "ratio", "median latency at the headline case"),
    "x PyTorch fp32": ("{:.2f}x", "ratio", "PyTorch fp32's median over the row's, same run and case"),
}


def load(folder: Path) -> Run:
    """The run of a report folder (or of its metrics.json); anything else is one line naming what was expected."""
    path = folder / "metrics.json" if folder.is_dir() else folder
    expected = "a report folder written by `workbench run` (it holds metrics.json)"
    if not path.is_file():
        raise InputError(f"{folder}: not {expected}")
    try:
        return Run.load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    except (ValidationError, ValueError):
        raise InputError(f"{path}: not the metrics.json of a workbench run; give {expected}") from None


def _figures(run: Run) -> dict[str, dict[str, float | None]]:
    """row -> figure -> value, for one run (PyTorch references included when benchmarked)."""
    bench = run.bench
    def timed(row: str) -> dict[str, float | None]:
        if bench is None:
            return {"latency ms": None, "x PyTorch fp32": None}
        t, r = bench.timing(row, bench.headline), bench.speedup(row, bench.headline)
        return {"latency ms": t.median_ms if t else None, "x PyTorch fp32": r.value if r else None}

    ref = run.reference
    out = {REFERENCE: {"bytes": ref.bytes, "of export": None, "accuracy": ref.accuracy, "agreement": 1.0, **timed(REFERENCE)}}
    for s in run.stages:
        art = s.artifact
        for c in s.checks:
            comparison = c.check.comparison if c.check is not None else None
            out[c.row] = {
                "bytes": art.bytes if art else None,
                "of export": s.share_of_export,
                "accuracy": comparison.accuracy if comparison else None,
                "agreement": comparison.agreement if comparison else None,
                **timed(c.row),
            }
    return out


def _change(how: str, first: float, last: float) -> str:
    if how == "ratio":
        return f"x{last / first:.2f}" if first else "-"
    return f"{100 * (last - first):+.2f} points"


def table(folders: list[Path]) -> tuple[list[str], list[list[str]], list[str]]:
    """Rows (row, figure, a value per run, the change first -> last), and the notes under the table."""
    runs = [load(folder) for folder in folders]
    names = [run.recipe if run.recipe == folder.name else f"{run.recipe} ({folder})" for run, folder in zip(runs, folders)]
    if len(set(names)) < len(names):  # the same recipe's reports from two places: name each by its folder
        names = [f"{run.recipe} ({folder})" for run, folder in zip(runs, folders)]
    headlines = {str(run.bench.headline) for run in runs if run.bench}
    if len(headlines) > 1:
        raise InputError(f"the runs timed different headline cases ({', '.join(sorted(headlines))}); latencies would not compare")
    figures = [_figures(run) for run in runs]
    several = len(runs) > 1
    header = ["row", "figure", *names] + ([f"change {names[0]} -> {names[-1]}"] if several else [])
    rows = []
    for row in dict.fromkeys(r for f in figures for r in f):
        for figure, (fmt, how, _) in FIGURES.items():
            values = [f.get(row, {}).get(figure) for f in figures]
            if all(v is None for v in values):
                continue
            cells = ["-" if v is None else fmt.format(v) for v in values]
            first, last = values[0], values[-1]
            change = ["-" if first is None or last is None else _change(how, first, last)] if several else []
            rows.append([row, figure, *cells, *change])
    case = f" ({next(iter(headlines))})" if headlines else ""
    notes = [f"{figure}: {meaning}" + (case if figure.startswith(("latency", "x ")) else "") for figure, (_, _, meaning) in FIGURES.items()]
    notes.append("change: last / first as xN for sizes, latencies and speed-ups; the difference in points for shares")
    if not several:
        notes.insert(0, "one report: nothing to compare it with, its figures are shown alone")
    return header, rows, notes


def render(header: list[str], rows: list[list[str]], notes: list[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"columns": header, "rows": rows, "notes": notes}, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out).writerows([header, *rows])
        return out.getvalue()
    from workbench.render.markdown import table as md

    return md(header, rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def main(args: argparse.Namespace) -> int:
    header, rows, notes = table(args.reports)
    if args.format != "table":
        print(render(header, rows, notes, args.format), end="")
        return 0
    from rich.console import Console

    from workbench.render import terminal

    console = Console()
    for part in terminal.tables(header, rows, "compare", console.width):
        console.print(part)
    for note in notes:
        console.print(f"- {note}", soft_wrap=False)
    return 0


