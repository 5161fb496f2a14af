"""``workbench run``: the run under a lock, a live progress display, benchmarks (cached), the report published whole."""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from workbench import __version__, environment, run
from workbench.model import torch_source
from workbench.results import RunResult
from workbench.recipe import Recipe
from workbench.render import charts, metrics, report, terminal
from workbench.runtimes import ENGINES, REFERENCE, TORCH_INT8, NotApplicable
from workbench.runtimes.pool import Pool
from workbench.store import publish
from workbench.store.cache import Cache
from workbench.store.files import key
from workbench.timing import cache as bench_cache
from workbench.timing import suite, tune


class RichProgress(run.Progress):
    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def stage(self, name: str) -> None:
        self.tasks[name] = self.progress.add_task(f"{name}", total=None)

    def validating(self, name: str, total: int) -> Callable[[int], None]:
        task = self.tasks[name.split(":")[-1]] if name not in self.tasks else self.tasks[name]
        self.progress.update(task, total=total, completed=0, description=f"{name}: validating")
        return lambda n: self.progress.advance(task, n)

    def done(self, name: str, outcome: str) -> None:
        task = self.tasks[name]
        total = self.progress.tasks[task].total or 1
        self.progress.update(task, total=total, completed=total, description=f"{name}: {outcome}")


@dataclass(frozen=True)
class Timings:
    """What the command took, split the way the report shows it (the total is taken when the report is written)."""

    started: float
    validation: float
    benchmarks: float

    def split(self) -> dict[str, float]:
        return {
            "total": time.perf_counter() - self.started,
            "validation": self.validation,
            "benchmarks": self.benchmarks,
        }


class _Captured(logging.Handler):
    """Root-logger lines of third-party code (e.g. onnxruntime's quantizer): kept for the report's notes."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def run_recipe(
    recipe: Recipe,
    *,
    force: bool,
    threads: int | None,
    quiet: bool,
    bench: bool = True,
    rebench: bool = False,
    started: float | None = None,
) -> int:
    started = time.perf_counter() if started is None else started
    console = Console(stderr=True, quiet=quiet)
    threads = environment.threads_for(recipe, threads)
    captured = _Captured()
    root = logging.getLogger()
    root.addHandler(captured)
    try:
        with publish.locked(recipe.report_dir), warnings.catch_warnings(record=True) as caught:
            run.pause("locked")
            warnings.simplefilter("always")
            columns = (
                SpinnerColumn(),
                TextColumn("{task.description:<44}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console) as progress:
                source, model_key = torch_source(recipe)
                pool = Pool(threads, source)
                result = run.run(recipe, source, model_key, pool, force=force, progress=RichProgress(progress))
                t0 = time.perf_counter()
                figures = None
                if bench and recipe.settings.bench.enabled:
                    figures = _benchmark(recipe, result, pool, model_key, progress, force=force or rebench)
                bench_s = time.perf_counter() - t0
            notes = _notes(captured.lines, [str(w.message) for w in caught])
            timings = Timings(started, result.validation_seconds, bench_s)
            written: dict = {}
            publish.publish(
                recipe.report_dir,
                lambda folder: written.update(_fill(result, figures, notes, timings, folder, redraw=force)),
            )
    finally:
        root.removeHandler(captured)
    terminal.summary(recipe, written, quiet)
    return 0 if result.passed else 1


def _benchmark(
    recipe: Recipe, result: RunResult, pool: Pool, model_key: str, progress: Progress, *, force: bool
) -> suite.BenchResult:
    task = progress.add_task("benchmarks", total=None)
    torch_version = result.environment["torch"]
    identities: list[dict] = [
        {"row": name, "model": model_key, "version": torch_version} for name in (REFERENCE, TORCH_INT8)
    ]
    rows = []  # (record, runtime, the row with the same graph on the same engine, timed in its place)
    runtimes = {r.name: r for r in recipe.runtimes}
    first_row: dict[tuple[str, str], str] = {}  # (engine, graph sha256) -> the row that times it
    for record in result.records:
        for check in record.checks:
            if record.artifact is None or check.not_applicable is not None:
                continue
            runtime = runtimes[check.engine]
            same = first_row.setdefault((runtime.name, record.artifact.graph_sha256), check.row)
            rows.append((record, runtime, None if same == check.row else same))
            identities.append(
                {
                    "row": check.row,
                    "sha256": record.artifact.sha256,
                    "version": ENGINES[runtime.name].version(),
                    "params": runtime.params.model_dump(mode="json"),
                }
            )

    def contenders() -> list[suite.Contender]:
        """Built only when the suite is measured: a cached suite loads no model and no session."""
        out = [suite.Contender(pool.reference(), None, "fp32"), suite.Contender(pool.torch_int8(), None, "int8")]
        for record, runtime, same in rows:
            try:
                runner = pool.artifact(runtime.name, runtime.params, record.stage, record.artifact.path)
            except NotApplicable:
                continue
            out.append(suite.Contender(runner, record.stage, record.precision.name, record.artifact.path, same))
        return out

    spec = recipe.settings.bench
    key = bench_cache.bench_key(identities, spec.model_dump(mode="json"), pool.threads, environment.machine())
    started = time.perf_counter()

    def note(text: str) -> None:
        progress.update(task, description=f"benchmarks: {text}"[:44])

    figures = bench_cache.cached(
        Cache(recipe.root / run.CACHE_DIR),
        key,
        lambda: suite.run(
            contenders(), spec, recipe.model.inputs, threads=pool.threads, vocab_size=recipe.model.vocab_size, note=note
        ),
        force=force,
    )
    outcome = f"cached, measured {figures.measured_at}" if figures.cached else f"{time.perf_counter() - started:.0f} s"
    progress.update(task, total=1, completed=1, description=f"benchmarks: {outcome}"[:44])
    return figures


def _notes(log_lines: list[str], warning_lines: list[str]) -> list[str]:
    """Third-party messages worth keeping, once each, for the report (never the terminal)."""
    seen = dict.fromkeys(line.strip() for line in log_lines + warning_lines if line.strip())
    return [line[:500] for line in seen]


def _charts(data: dict, cache: Cache, folder: Path, *, redraw: bool) -> dict[str, str]:
    """The report's charts, drawn once per distinct input (drawing them takes a second; an unchanged rerun reuses)."""

    def draw(scratch: Path, facts: dict) -> None:
        facts["charts"] = charts.write(data, scratch)

    entry_folder, facts, _ = cache.fetch(key("charts", __version__, charts.inputs(data)), draw, force=redraw)
    for name in facts["charts"].values():
        shutil.copy2(entry_folder / name, folder / name)
    return facts["charts"]


def _fill(
    result: RunResult,
    figures: suite.BenchResult | None,
    notes: list[str],
    timings: Timings,
    folder: Path,
    *,
    redraw: bool,
) -> dict:
    copies = run.copy_artifacts(result, folder)
    if figures is not None and figures.tuning is not None and figures.tuning.stage in copies:
        tune.save(figures.tuning, copies[figures.tuning.stage])
    cache = Cache(result.recipe.root / run.CACHE_DIR)
    drawn = _charts(metrics.metrics(result, figures, copies), cache, folder, redraw=redraw)
    data = metrics.metrics(result, figures, copies, notes=notes, timings=timings.split(), charts=drawn)
    report.write(data, result.recipe.text, folder)
    run.pause("publish")
    return data
