"""``workbench run``: the pipeline under a lock, a live progress display, the report published whole."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from workbench import pipeline, publish, report
from workbench.recipe import Recipe


TERMINAL_COLUMNS = ("stage", "bytes", "of fp32", "max abs err", "agreement", "accuracy", "verdict")


class RichProgress(pipeline.Progress):
    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def stage(self, name: str) -> None:
        self.tasks[name] = self.progress.add_task(f"{name}", total=None)

    def validating(self, name: str, total: int) -> Callable[[int], None]:
        task = self.tasks[name]
        self.progress.update(task, total=total, completed=0, description=f"{name}: validating")
        return lambda n: self.progress.advance(task, n)

    def done(self, name: str, outcome: str) -> None:
        task = self.tasks[name]
        total = self.progress.tasks[task].total or 1
        self.progress.update(task, total=total, completed=total, description=f"{name}: {outcome}")


def run_recipe(recipe: Recipe, *, force: bool, threads: int | None, quiet: bool) -> int:
    console = Console(stderr=True, quiet=quiet)
    with publish.locked(recipe.report_dir):
        columns = (SpinnerColumn(), TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            result = pipeline.run(recipe, force=force, threads=threads, progress=RichProgress(progress))

        def fill(folder):
            copies = pipeline.copy_artifacts(result, folder)
            fill.data = report.write(result, folder, copies)

        publish.publish(recipe.report_dir, fill)
    data = fill.data
    header, rows = report.summary_rows(data)
    keep = [header.index(c) for c in TERMINAL_COLUMNS]
    table = Table(*(header[i] for i in keep), title=f"{recipe.name}: {data['verdict']}")
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    Console(quiet=quiet).print(table)
    print(f"{report.verdict_line(data).replace('**', '')}\nreport: {recipe.report_dir / 'report.md'}")
    return 0 if result.passed else 1
