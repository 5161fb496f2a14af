"""``workbench run``: the pipeline under a lock, a live progress display, benchmarks, the report published whole."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from workbench import charts, perf, pipeline, publish, report, speed, tune
from workbench.recipe import Recipe
from workbench.stages import REGISTRY

# report column -> its shorter terminal heading (the whole table fits 80 columns)
TERMINAL_COLUMNS = {
    "stage": "stage",
    "bytes": "bytes",
    "of fp32": "of fp32",
    "max abs err": "max err",
    "agreement": "agree",
    "accuracy": "acc",
    "verdict": "verdict",
}


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


def run_recipe(recipe: Recipe, *, force: bool, threads: int | None, quiet: bool, bench: bool = True) -> int:
    console = Console(stderr=True, quiet=quiet)
    threads = pipeline.threads_for(recipe, threads)
    with publish.locked(recipe.report_dir):
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description:<36}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            source, model_key = pipeline.torch_source(recipe)
            result = pipeline.run(
                recipe, source, model_key, threads=threads, force=force, progress=RichProgress(progress)
            )
            if bench and recipe.settings.bench.enabled:
                result = replace(result, bench=_benchmark(recipe, result, source.module, threads, progress))
        written: dict = {}
        publish.publish(recipe.report_dir, lambda folder: written.update(_fill(result, folder)))
    _summary(recipe, written, quiet)
    return 0 if result.passed else 1


def _benchmark(recipe: Recipe, result: pipeline.RunResult, module, threads: int, progress: Progress) -> dict:
    task = progress.add_task("benchmarks", total=None)
    artifacts = [(r.stage, r.artifact.path, REGISTRY[r.stage].precision) for r in result.records if r.artifact]
    figures = perf.run(
        module,
        artifacts,
        recipe.settings.bench,
        threads=threads,
        vocab_size=recipe.model.input.vocab_size,
        batch_first=recipe.model.input.axes[0] == "batch",
        on_case=lambda text: progress.update(task, description=f"benchmarks: {text}"),
    )
    progress.update(task, total=1, completed=1, description="benchmarks: done")
    return figures


def _fill(result: pipeline.RunResult, folder: Path) -> dict:
    copies = pipeline.copy_artifacts(result, folder)
    data = report.metrics(result, copies)
    tuning = (data.get("bench") or {}).get("tuning")
    if tuning:
        tune.save(tuning, copies[tuning["stage"]])
    data["charts"] = charts.write(data, folder)
    report.write(data, result.recipe.text, folder)
    return data


def _summary(recipe: Recipe, data: dict, quiet: bool) -> None:
    header, rows = report.summary_rows(data)
    keep = [header.index(c) for c in TERMINAL_COLUMNS]
    short = [[row[i].replace(" (cached)", "").replace("reference", "-") for i in keep] for row in rows]
    table = speed.terminal_table(
        [TERMINAL_COLUMNS[header[i]] for i in keep], short, f"{recipe.name}: {data['verdict']}"
    )
    Console(quiet=quiet).print(table)
    cached = [s["stage"] for s in data["stages"] if s["cached"]]
    if cached:
        print(f"cached: {', '.join(cached)} (unchanged input, parameters and tool versions; --force redoes them)")
    print(f"{report.verdict_line(data).replace('**', '')}\nreport: {recipe.report_dir / 'report.md'}")
