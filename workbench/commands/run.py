"""``workbench run``: the pipeline under a lock with a live progress display, the benchmarks (cached), one run
model assembled, the report folder published whole, the terminal summary."""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBar

from workbench import __version__, environment, pipeline
from workbench.context import RunContext
from workbench.decide import search, ship
from workbench.model import torch_source
from workbench.progress import Progress
from workbench.recipe import Recipe
from workbench.render import charts, decision, report, terminal
from workbench.results import Bench, Run, RuntimeInfo, TimeSplit
from workbench.runtimes import ENGINES
from workbench.spread import Spread
from workbench.store import publish
from workbench.store.files import key, write_atomic
from workbench.timing import suite, tune


class BarProgress(Progress):
    """Progress on a rich display: a line per stage, validation bars per row."""

    def __init__(self, bar: RichBar):
        self.bar = bar
        self.tasks: dict[str, int] = {}

    def stage(self, name: str) -> None:
        self.tasks[name] = self.bar.add_task(name, total=None)

    def validating(self, name: str, total: int) -> Callable[[int], None]:
        task = self.tasks.get(name) or self.tasks[name.split(":")[-1]]
        self.bar.update(task, total=total, completed=0, description=f"{name}: validating")
        return lambda n: self.bar.advance(task, n)

    def note(self, name: str, text: str) -> None:
        if name not in self.tasks:
            self.stage(name)
        self.bar.update(self.tasks[name], description=f"{name}: {text}"[:44])

    def done(self, name: str, outcome: str) -> None:
        task = self.tasks[name]
        total = self.bar.tasks[task].total or 1
        self.bar.update(task, total=total, completed=total, description=f"{name}: {outcome}"[:44])


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
    progress: Progress | None = None,
    spread: Spread | None = None,
) -> int:
    """Run ``recipe`` and publish its report; 0 when every stage passed, 1 when one failed."""
    started = time.perf_counter() if started is None else started
    console = Console(stderr=True, quiet=quiet)
    threads = environment.threads_for(recipe, threads)
    captured = _Captured()
    logging.getLogger().addHandler(captured)
    try:
        with publish.locked(recipe.report_dir), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            columns = (SpinnerColumn(), TextColumn("{task.description:<44}"), BarColumn(bar_width=20),
                       MofNCompleteColumn(), TimeElapsedColumn())
            with RichBar(*columns, console=console) as bar:
                shown = progress or BarProgress(bar)
                shown.checkpoint("locked")
                source, model_key = torch_source(recipe)
                ctx = RunContext(recipe, source, model_key, threads, force, shown, spread)
                targets, _ = ship.targets(recipe, threads), search.variants(recipe)  # bad ones: one line, no work
                validated = pipeline.run(ctx)
                searched = search.run(ctx, validated, targets) if recipe.settings.search else None
                t0 = time.perf_counter()
                figures = None
                if bench and recipe.settings.bench.enabled:
                    shown.stage("benchmarks")
                    planned = suite.plan(validated.records, ctx)
                    planned += search.planned(searched, ctx, validated.records) if searched else []
                    figures = suite.cached(ctx, planned, force=force or rebench)
                    outcome = f"cached, measured {figures.measured_at}" if figures.cached else "measured"
                    shown.done("benchmarks", outcome)
                bench_s = time.perf_counter() - t0
            notes = _notes(captured.lines, [str(w.message) for w in caught])
            reused = _reused(recipe, validated, figures)
            split = reused or TimeSplit(
                total=time.perf_counter() - started, validation=validated.seconds, benchmarks=bench_s
            )
            run = _decided(_assemble(ctx, validated, figures, notes, split), recipe, targets, searched)
            publish.publish(recipe.report_dir, lambda folder: _fill(ctx, run, folder, redraw=force, searched=searched))
            shown.checkpoint("published")
    finally:
        logging.getLogger().removeHandler(captured)
    terminal.summary(run, recipe.report_dir / "report.md", quiet)
    return 0 if run.passed else 1


def _assemble(
    ctx: RunContext, validated: pipeline.Validated, bench: Bench | None, notes: list[str], split: TimeSplit
) -> Run:
    """The run model, built once from what was computed."""
    from datetime import datetime, timezone

    recipe = ctx.recipe
    return Run(
        recipe=recipe.name,
        recipe_text=recipe.text,
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        time=split,
        reference=validated.reference,
        stages=validated.records,
        skipped=validated.skipped,
        skip_reason=validated.skip_reason,
        environment=environment.snapshot(ctx.threads, recipe.runtimes).model_copy(
            update={"split": ctx.spread.record() if ctx.spread else None}
        ),
        inputs=recipe.model.inputs,
        runtimes=tuple(RuntimeInfo(engine=r.name, params=r.params.model_dump(mode="json")) for r in recipe.runtimes),
        data=recipe.settings.data.model_dump(mode="json"),
        notes=tuple(notes),
        bench=bench,
        data_facts=ctx.evaluation.facts,
    )


def _reused(recipe: Recipe, validated: pipeline.Validated, bench: Bench | None) -> TimeSplit | None:
    """When nothing was computed (every stage, check and the benchmarks came from the cache), the time of the
    run that did the work, read from the report it left, marked as reused."""
    everything_cached = validated.reference.cached and all(
        s.cached and all(c.cached for c in s.checks) for s in validated.records
    )
    if not everything_cached or (bench is not None and not bench.cached):
        return None
    try:
        before = Run.load((recipe.report_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return before.time.model_copy(update={"reused_from": before.time.reused_from or before.started})


def _notes(log_lines: list[str], warning_lines: list[str]) -> list[str]:
    """Third-party messages worth keeping, once each, whole, for the report (never the terminal)."""
    return list(dict.fromkeys(line.strip() for line in log_lines + warning_lines if line.strip()))


def _decided(run: Run, recipe: Recipe, targets: tuple[ship.Target, ...], searched: search.Searched | None) -> Run:
    """The run with its Ship decision (when it was timed): per target, among the stages' rows and the trials."""
    if run.bench is None:
        return run
    budget = recipe.settings.budget
    made = ship.decide(run, targets, budget, trials=searched.trials if searched else (),
                       trial_checks=searched.checks if searched else None, search=searched.note if searched else None)
    return run.model_copy(update={"decision": made})


def _fill(ctx: RunContext, run: Run, folder: Path, *, redraw: bool, searched: search.Searched | None = None) -> None:
    """The report folder: every artifact, tuned options beside theirs, charts, metrics.json, report.md."""
    for record in run.stages:
        if record.artifact is not None and record.artifact.path is not None:
            for name in record.artifact.files:
                shutil.copy2(record.artifact.path.parent / name, folder / name)
    params = {r.name: r.params for r in ctx.recipe.runtimes}
    for tuning in run.bench.tunings if run.bench and run.bench.quiet else ():  # no choice made under load
        tune.save(tuning, params.get(tuning.engine) or ENGINES[tuning.engine].params(), folder / f"{tuning.stage}.onnx")
    drawn = _charts(ctx, run, folder, redraw=redraw)
    _ship(ctx, run, folder, searched, redraw=redraw)
    write_atomic(folder / "metrics.json", lambda tmp: tmp.write_text(run.dump()))
    text = report.render(run, drawn)
    write_atomic(folder / "report.md", lambda tmp: tmp.write_text(text))
    ctx.progress.checkpoint("publish")


def _ship(ctx: RunContext, run: Run, folder: Path, searched: search.Searched | None, *, redraw: bool) -> None:
    """Each target's chosen file as ship/<target>.onnx with its session settings, and the decision's charts."""
    if run.decision is None:
        return
    paths = searched.paths if searched else {
        c.row: s.artifact.path for s in run.stages if s.artifact and s.artifact.path for c in s.checks
    }
    engines = {r.name: r.params.model_dump(mode="json") for r in ctx.recipe.runtimes}
    tuned = {t.row: t.best.options for t in run.bench.tunings} if run.bench else {}
    ship.write(run.decision, paths, engines, folder, tuned)

    def draw(scratch: Path, facts: dict) -> None:
        facts["charts"] = decision.draw(run, scratch)

    entry, facts, _ = ctx.cache.fetch(key("decision-charts", __version__, decision.inputs(run)), draw, force=redraw)
    for name in facts["charts"].values():
        shutil.copy2(entry / name, folder / name)


def _charts(ctx: RunContext, run: Run, folder: Path, *, redraw: bool) -> dict[str, str]:
    """The report's charts, drawn once per distinct input (drawing takes a second; an unchanged rerun reuses)."""

    def draw(scratch: Path, facts: dict) -> None:
        facts["charts"] = charts.write(run, scratch)

    entry_folder, facts, _ = ctx.cache.fetch(key("charts", __version__, charts.inputs(run)), draw, force=redraw)
    for name in facts["charts"].values():
        shutil.copy2(entry_folder / name, folder / name)
    return facts["charts"]
