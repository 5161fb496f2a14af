"""What ``workbench run`` prints when it is done: a table that fits 80 columns, the verdict, the report's path."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from workbench.recipe import Recipe
from workbench.render import report

# report column -> its shorter terminal heading (the whole table fits 80 columns)
COLUMNS = {
    "row": "row",
    "of fp32": "size",
    "max abs err": "max err",
    "agreement": "agree",
    "accuracy": "acc",
    "verdict": "verdict",
}


def table(header: list[str], rows: list[list[str]], title: str) -> Any:
    from rich import box
    from rich.table import Table

    out = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)  # light chrome: room for figures in 80 columns
    for index, name in enumerate(header):
        out.add_column(name, overflow="fold", no_wrap=index == 0)  # fold figures rather than cut them; rows whole
    for row in rows:
        out.add_row(*row)
    return out


def summary(recipe: Recipe, data: dict[str, Any], quiet: bool) -> None:
    header, rows = report.summary_rows(data)
    keep = [header.index(c) for c in COLUMNS]
    short = [[row[i] for i in keep] for row in rows]
    for row in short:  # the terminal says "cached" once, below the table
        row[-1] = row[-1].replace(" (cached)", "").replace("not applicable", "n/a").replace("reference", "-")
    Console(quiet=quiet).print(table([COLUMNS[header[i]] for i in keep], short, f"{recipe.name}: {data['verdict']}"))
    cached = [s["stage"] for s in data["stages"] if s["cached"]]
    if cached:
        print(f"cached: {', '.join(cached)} (unchanged input, parameters and tool versions; --force redoes them)")
    bench = data.get("bench")
    if bench and bench.get("cached"):
        print(f"benchmarks: cached, measured {bench['measured_at']} (--rebench measures again)")
    print(f"{report.verdict_line(data).replace('**', '')}\nreport: {recipe.report_dir / 'report.md'}")
