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


def table(header: list[str], rows: list[list[str]], title: str) -> Any:
    from rich import box
    from rich.table import Table

    out = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)  # light chrome: room for figures in 80 columns
    for index, name in enumerate(header):
        out.add_column(name, overflow="fold", no_wrap=index == 0)  # rows whole; long cells wrap at spaces
    for row in rows:
        out.add_row(*row)
    return out


def summary(run: Run, report_path: Path, quiet: bool) -> None:
    """The run's table (the report's, fewer columns), what came from the cache, the verdict, the report."""
    keep = [report.HEADER.index(c) for c in COLUMNS]
    rows = []
    for full in report.summary_rows(run):
        row = [full[i] for i in keep]
        word = row[-1].replace(" (cached)", "")
        row[-1] = SHORT.get(word, word)
        rows.append(row)
    Console(quiet=quiet).print(table(list(COLUMNS.values()), rows, f"{run.recipe}: {run.verdict}"))
    cached = [s.stage for s in run.stages if s.cached]
    if cached:
        print(f"cached: {', '.join(cached)} (unchanged input, parameters and tool versions; --force redoes them)")
    if run.bench is not None and run.bench.cached:
        print(f"benchmarks: cached, measured {run.bench.measured_at} (--rebench measures again)")
    print(f"{report.headline(run).replace('**', '')}\nreport: {report_path}")
    for line in decision.terminal_lines(run, report_path.parent):  # the Ship decision, a line per target
        print(line)
