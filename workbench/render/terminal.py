"""What the command line prints: tables that keep words whole within 80 columns, the verdict, the report's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from workbench.render import decision, report
from workbench.results import Run

# report column -> its terminal heading (the whole table fits 80 columns)
COLUMNS = {"row": "row", "of export": "size", "max abs err": "max err", "agreement": "agree", "accuracy": "acc",
           "verdict": "verdict"}
SHORT = {"not applicable": "n/a", "reference": "-"}


GAP = 3  # a column's padding and the space between columns


def _widths(header: list[str], rows: list[list[str]], width: int) -> list[int]:
    """Each column's width: its longest cell when everything fits, else narrower columns, never below a column's
    longest word (cells wrap at spaces, never inside a word); the first column (the row's name) stays whole."""
    columns = [[h, *(r[i] for r in rows)] for i, h in enumerate(header)]
    full = [max(len(c) for c in col) for col in columns]
    least = [full[0]] + [max(len(w) for c in col for w in c.split() or [""]) for col in columns[1:]]
    widths = list(full)
    while sum(widths) + GAP * len(widths) > width:
        wide = max(range(1, len(widths)), key=lambda i: widths[i] - least[i], default=None)
        if wide is None or widths[wide] <= least[wide]:
            break
        widths[wide] -= 1
    return widths


def table(header: list[str], rows: list[list[str]], title: str, width: int = 80) -> Any:
    from rich import box
    from rich.table import Table

    out = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)  # light chrome: room for figures in 80 columns
    for index, (name, size) in enumerate(zip(header, _widths(header, rows, width))):
        out.add_column(name, no_wrap=index == 0, width=size, overflow="fold")
    for row in rows:
        out.add_row(*row)
    return out


def tables(header: list[str], rows: list[list[str]], title: str, width: int) -> list[Any]:
    """The table in as many parts as it takes to fit ``width`` with no word cut: the first column (the row's name)
    in every part, then as many of the other columns as fit."""
    first = max(len(header[0]), *(len(r[0]) for r in rows)) if rows else len(header[0])
    parts: list[list[int]] = [[]]
    used = first + GAP
    for index in range(1, len(header)):
        need = max(len(w) for c in [header[index], *(r[index] for r in rows)] for w in c.split() or [""]) + GAP
        if parts[-1] and used + need > width:
            parts.append([])
            used = first + GAP
        parts[-1].append(index)
        used += need
    return [
        table([header[0], *(header[i] for i in part)], [[r[0], *(r[i] for i in part)] for r in rows],
              title if n == 0 else f"{title} (continued)", width)
        for n, part in enumerate(parts)
    ]


def summary(run: Run, report_path: Path, quiet: bool) -> None:
    """The run's table (the report's, fewer columns), what came from the cache, the verdict, the report."""
    keep = [report.HEADER.index(c) for c in COLUMNS]
    rows = []
    for full in report.summary_rows(run):
        row = [full[i] for i in keep]
        word = row[-1].replace(" (cached)", "")
        row[-1] = SHORT.get(word, word)
        rows.append(row)
    console = Console(quiet=quiet)
    console.print(table(list(COLUMNS.values()), rows, f"{run.recipe}: {run.verdict}", console.width))
    cached = [s.stage for s in run.stages if s.cached]
    if cached:
        print(f"cached: {', '.join(cached)} (unchanged input, parameters and tool versions; --force redoes them)")
    if run.bench is not None and run.bench.cached:
        print(f"benchmarks: cached, measured {run.bench.measured_at} (--rebench measures again)")
    if run.bench is not None and not run.bench.quiet:
        print("benchmarks: the machine was busy while timing; figures flagged, not cached as clean, no tuning saved:")
        for reason in run.bench.busy_reasons:
            print(f"  {reason}")
    print(f"{report.headline(run).replace('**', '')}\nreport: {report_path}")
    for line in decision.terminal_lines(run, report_path.parent):  # the Ship decision, a line per target
        print(line)
