"""The benchmarks of one ``workbench run``: every artifact on every engine beside PyTorch fp32 and int8.

``plan`` turns the validated records into contenders (each row that ran, once per graph and engine);
``measure`` times them all together in one stretch, so every ratio compares figures taken side by side,
then the length chart, and each engine's tuning and profile of its final artifact where the engine has
those hooks. ``cached`` keeps the whole suite as one cache entry keyed by everything its figures depend on.
Nothing here names an engine or a precision.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench import __version__, environment, ops
from workbench.context import RunContext
from workbench.precision import FP32, INT8, Precision
from workbench.recipe import BenchSpec
from workbench.results import (
    Bench, Case, Contender, FastestAt, Profile, Ratio, Speedup, StageRecord, Timing, Tuning, ratio,
)
from workbench.runtimes import ENGINES, REFERENCE, TORCH, TORCH_INT8, EngineParams, NotApplicable, Runner
from workbench.store.files import key
from workbench.timing import measure, stats, tune


@dataclass(frozen=True)
class Planned:
    """A contender before it is built: its row, what its figures depend on, and how to build its runner."""

    row: str
    engine: str
    stage: str | None
    precision: Precision
    identity: dict[str, Any]  # what its figures depend on (part of the suite's cache key)
    build: Callable[[], Runner]
    path: Path | None = None
    params: EngineParams | None = None
    same_as: str | None = None  # the row of an earlier stage with the same graph on the same engine


def plan(records: Sequence[StageRecord], ctx: RunContext) -> list[Planned]:
    """The PyTorch references, then each row that ran (a row sharing its graph with an earlier one is not timed
    again: it takes that row's figures)."""
    torch_version = ctx.versions["torch"]
    out = [
        Planned(REFERENCE, TORCH, None, FP32, {"row": REFERENCE, "model": ctx.model_key, "version": torch_version},
                ctx.pool.reference),
        Planned(TORCH_INT8, TORCH, None, INT8, {"row": TORCH_INT8, "model": ctx.model_key, "version": torch_version},
                ctx.pool.torch_int8),
    ]
    runtimes = {r.name: r for r in ctx.recipe.runtimes}
    for record in records:
        for check in record.checks:
            if record.artifact is None or record.artifact.path is None or not check.ran:
                continue
            runtime, path = runtimes[check.engine], record.artifact.path
            identity = {
                "row": check.row,
                "sha256": record.artifact.sha256,
                "version": ENGINES[runtime.name].version(),
                "params": runtime.params.model_dump(mode="json"),
            }
            build = lambda rt=runtime, st=record.stage, p=path: ctx.pool.artifact(rt.name, rt.params, st, p)  # noqa: E731
            out.append(
                Planned(check.row, runtime.name, record.stage, record.precision, identity, build, path, runtime.params,
                        check.same_graph_as)
            )
    return out


def cases(spec: BenchSpec, targets: Sequence[Case] = ()) -> list[Case]:
    """The latency cases, the throughput case, then each target's case not among them (decide.ship.target_cases)."""
    latency = [Case(batch=1, length=n) for n in spec.latency_lengths]
    own = latency + [Case(batch=spec.throughput.batch, length=spec.throughput.length)]
    return own + [c for c in dict.fromkeys(targets) if c not in own]


def suite_key(planned: Sequence[Planned], spec: BenchSpec, threads: int, targets: Sequence[Case] = ()) -> str:
    identities = [p.identity for p in planned]
    extra = [c.name for c in cases(spec, targets)[len(cases(spec)):]]  # only what targets add: old keys stay valid
    waiting = {name: os.environ.get(name) for name in environment.TIMING_VARIABLES}  # how engines' threads wait
    parts = ("bench", __version__, identities, spec.model_dump(mode="json"), threads, environment.machine(), waiting)
    return key(*parts, *([extra] if extra else []))


def _targets(ctx: RunContext) -> list[Case]:
    from workbench.decide.ship import target_cases

    return target_cases(ctx.recipe)


def cached(ctx: RunContext, planned: Sequence[Planned], *, force: bool) -> Bench:
    """The stored suite for these contenders, or the suite measured now; stored only when the machine was quiet
    throughout (figures taken under load are shown, flagged, and measured again by the next run)."""
    spec = ctx.recipe.settings.bench
    entry = suite_key(planned, spec, ctx.threads, _targets(ctx))
    hit = None if force else ctx.cache.get(entry)
    if hit is not None:
        bench = Bench.model_validate_json((hit[0] / "bench.json").read_text())
        return bench.model_copy(update={"cached": True})
    bench = measure_suite(planned, spec, ctx)
    if bench.quiet or spec.cache_when_busy:
        with ctx.cache.put(entry, replace=force) as (scratch, _):
            (scratch / "bench.json").write_text(bench.model_dump_json())
    return bench


def measure_suite(planned: Sequence[Planned], spec: BenchSpec, ctx: RunContext) -> Bench:
    """Time every contender on every case; the length chart; each engine's tuning and profile of its final artifact."""
    say = lambda text: ctx.progress.note("benchmarks", text)  # noqa: E731
    feed = ctx.recipe.model.feed
    started = time.perf_counter()
    runners: dict[str, Runner] = {}
    for p in planned:
        if p.same_as is None:
            try:
                runners[p.row] = p.build()
            except NotApplicable:
                continue
    timed = [p for p in planned if p.row in runners]
    timed_cases = cases(spec, _targets(ctx))
    headline = Case(batch=1, length=max(spec.latency_lengths))
    on_block = lambda c, name: say(f"{c}: {name}")  # noqa: E731
    timings, loads = measure.run_cases([runners[p.row] for p in timed], timed_cases, feed,
                                       budget_s=spec.budget_seconds, threads=ctx.threads, on_block=on_block)
    for alias in (p for p in planned if p.same_as is not None and p.same_as in runners):
        timings += [t.model_copy(update={"contender": alias.row}) for t in timings if t.contender == alias.same_as]
    chart = _chart_rows(timed)
    by_length, chart_loads = measure.run_cases(
        [runners[p.row] for p in chart],
        [Case(batch=1, length=n) for n in spec.chart_lengths if n not in {c.length for c in timed_cases if c.batch == 1}],
        feed,
        budget_s=spec.budget_seconds,
        threads=ctx.threads,
        on_block=lambda c, name: say(f"chart {c}: {name}"),
    )
    chart_rows = {p.row: p.row if p.stage is None else f"{p.row} ({p.precision})" for p in chart}
    by_length += [t for t in timings if t.case.batch == 1 and t.case.length in spec.chart_lengths and t.contender in chart_rows]
    tunings, profiles = _tune_and_profile(timed, spec, ctx, headline, say)
    contenders = tuple(
        Contender(
            row=p.row,
            engine=p.engine,
            stage=p.stage,
            precision=p.precision,
            ran_as=runners[p.same_as or p.row].precision,
            same_as=p.same_as,
        )
        for p in planned
        if (p.same_as or p.row) in runners
    )
    rows = [p.row for p in planned if (p.same_as or p.row) in runners]
    return Bench(
        speedups=speedups(timings, rows, timed_cases),
        fastest=tuple(fastest_at(timings, case) for case in timed_cases),
        loads=tuple(loads + chart_loads),
        threads=ctx.threads,
        budget_seconds=spec.budget_seconds,
        cases=tuple(timed_cases),
        headline=headline,
        contenders=contenders,
        timings=tuple(timings),
        by_length=tuple(by_length),
        chart_rows=chart_rows,
        tunings=tunings,
        profiles=profiles,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        measure_seconds=time.perf_counter() - started,
    )


def speedups(timings: Sequence[Timing], rows: Sequence[str], cases: Sequence[Case]) -> tuple[Speedup, ...]:
    """Every row over each PyTorch reference at every case, each with its paired-bootstrap interval."""
    by = {(t.contender, t.case): t for t in timings}
    out = []
    for baseline in (REFERENCE, TORCH_INT8):
        for case in cases:
            base = by.get((baseline, case))
            for row in rows:
                this = by.get((row, case))
                if base is not None and this is not None:
                    found = ratio(base, this)
                    out.append(Speedup(row=row, baseline=baseline, case=case, **found.model_dump()))
    return tuple(out)


def fastest_at(timings: Sequence[Timing], case: Case) -> FastestAt:
    """The fastest row at ``case``, or the rows it cannot be told apart from (aliases of one graph count once)."""
    blocks: dict[str, tuple[float, ...]] = {}
    for t in timings:
        if t.case == case and t.block_medians_ms not in blocks.values():
            blocks[t.contender] = t.block_medians_ms
    found = stats.fastest(blocks)
    lead = Ratio(value=found.lead.estimate, low=found.lead.low, high=found.lead.high) if found.lead else None
    return FastestAt(case=case, winner=found.winner, runner_up=found.runner_up, lead=lead, tied=found.tied)


def _chart_rows(timed: Sequence[Planned]) -> list[Planned]:
    """The length chart: the references, the first engine's first unquantized artifact and its last quantized one."""
    artifacts = [p for p in timed if p.stage is not None]
    first_engine = [p for p in artifacts if p.engine == artifacts[0].engine] if artifacts else []
    plain = next((p for p in first_engine if not p.precision.quantized), None)
    quantized = next((p for p in reversed(first_engine) if p.precision.quantized), None)
    return [p for p in timed if p.stage is None] + [p for p in (plain, quantized) if p is not None]


def _tune_and_profile(
    timed: Sequence[Planned], spec: BenchSpec, ctx: RunContext, headline: Case, say: Callable[[str], None]
) -> tuple[tuple[Tuning, ...], tuple[Profile, ...]]:
    """For each engine with the hooks: its final artifact tuned (``bench.tune``) and profiled at the headline case."""
    tunings, profiles = [], []
    feed = ctx.recipe.model.feed
    finals = {p.engine: p for p in timed if p.stage is not None and p.path is not None}  # the last row per engine
    first_file = next((p.path for p in timed if p.path is not None), None)
    for engine_name, final in finals.items():
        engine = ENGINES[engine_name]
        assert final.path is not None and final.stage is not None and final.params is not None
        if spec.tune and engine.tuner is not None:
            say(f"tuning {final.row}")
            tunings.append(
                tune.tune(engine, final.params, final.path, final.stage, headline, feed,
                          threads=ctx.threads, budget_s=spec.budget_seconds)
            )
        if engine.profiler is not None:
            say(f"profiling {final.row}")
            shares = engine.profiler(final.path, final.params, feed.random(headline.batch, headline.length), ctx.threads)
            macs = ops.recurrent_macs_per_token(first_file) if first_file else None
            profiles.append(Profile(row=final.row, engine=engine_name, case=headline, op_share=shares,
                                    macs_per_token=macs))
    return tuple(tunings), tuple(profiles)
