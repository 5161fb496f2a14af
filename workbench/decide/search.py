"""Search: a recipe's ``search:`` expanded into trial recipes, each run through the same cached pipeline.

A trial replaces the recipe's last stage when it quantizes (else it is appended) with one variant: one stage of
``search.stage`` and one value of each parameter in ``search.vary``, in the order listed (the first key varies
slowest; ``exclude_most_sensitive`` always varies fastest, so a setting is tried whole first, then without its
worst node, then without its two worst, ...). ``exclude_most_sensitive: N`` keeps fp32 the N nodes that the
per-layer error of the same setting with nothing excluded ranks worst. Like Intel Neural Compressor's
``tolerable_loss`` and NNCF's accuracy control, trials stop at the first one within the budget on every
target's engine, or at ``max_trials``. Every stage before the trial's is shared through the cache, so an
unchanged rerun (or a new budget) reuses every trial. ``planned`` makes the trials contenders of the run's
benchmarks (rows ``<engine>:trial<N>``), timed in the same stretch as every other artifact.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from workbench.decide.ship import EngineFigures, Target, TrialSummary, over_budget, within
from workbench.errors import RecipeError
from workbench.progress import Progress
from workbench.precision import FP32
from workbench.recipe import BudgetSpec, Recipe, StageConfig
from workbench.recipe_errors import describe
from workbench.stages import REGISTRY

if TYPE_CHECKING:
    from workbench.context import RunContext
    from workbench.pipeline import Validated
    from workbench.results import EngineCheck, StageRecord
    from workbench.runtimes import Runner
    from workbench.timing.suite import Planned

EXCLUDE = "exclude_most_sensitive"


@dataclass(frozen=True)
class Variant:
    """One trial's settings: the stage, the varied parameters' values, how many of the worst nodes stay fp32."""

    stage: str
    values: tuple[tuple[str, Any], ...]
    exclude: int

    def label(self, several_stages: bool, excluded: Sequence[str] = ()) -> str:
        words = [self.stage] if several_stages else []
        words += [f"{k}={json.dumps(v)}" for k, v in self.values]
        if self.exclude:
            words.append(f"exclude {self.exclude} ({', '.join(excluded)})" if excluded else f"exclude {self.exclude}")
        return ", ".join(words) or "defaults"


@dataclass
class Searched:
    """What the search ran: a summary per trial, its record (checks on trial rows), every file by row, how it went."""

    trials: list[TrialSummary]
    records: dict[int, StageRecord]
    paths: dict[str, Path]  # row -> the ONNX file (the trials' and the recipe's stages')
    note: str

    @property
    def checks(self) -> dict[int, tuple[EngineCheck, ...]]:
        return {index: record.checks for index, record in self.records.items()}


def trial_row(engine: str, index: int) -> str:
    """How trial ``index``'s artifact on ``engine`` is named in every table."""
    return f"{engine}:trial{index}"


# ---- the variants -------------------------------------------------------------------------------------------


def variants(recipe: Recipe) -> list[Variant]:
    """Every variant the recipe's ``search:`` allows, in trial order; a key or value no searched stage takes is a
    RecipeError naming ``search.vary.<key>``."""
    spec = recipe.settings.search
    if spec is None:
        return []
    vary = {k: v for k, v in spec.vary.items() if k != EXCLUDE}
    excludes = spec.vary.get(EXCLUDE, [0])
    _check_excludes(recipe, excludes)
    for name in vary:
        if not any(name in REGISTRY[stage].params.model_fields for stage in spec.stage):
            raise RecipeError(
                f"{recipe.path}: search.vary.{name}: no searched stage ({', '.join(spec.stage)}) has this parameter; "
                f"allowed: {', '.join(sorted(_allowed(spec.stage)))}"
            )
    out: list[Variant] = []
    for stage in spec.stage:
        own = {k: v for k, v in vary.items() if k in REGISTRY[stage].params.model_fields}
        for combo in itertools.product(*own.values()):
            values = tuple(zip(own, combo))
            _validate(recipe, stage, dict(values))
            out += [Variant(stage, values, int(n)) for n in excludes]
    return [v for i, v in enumerate(out) if v not in out[:i]]  # values may be lists (op_types): no hashing


def _allowed(stages: Sequence[str]) -> set[str]:
    return {EXCLUDE} | {k for s in stages for k in REGISTRY[s].params.model_fields if k != "nodes_to_exclude"}


def _check_excludes(recipe: Recipe, excludes: Any) -> None:
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 64 for n in excludes):
        raise RecipeError(
            f"{recipe.path}: search.vary.{EXCLUDE}: a list of node counts from 0 to 64, got {excludes!r}"
        )


def _validate(recipe: Recipe, stage: str, values: dict[str, Any]) -> None:
    try:
        REGISTRY[stage].params.model_validate({**_base_params(recipe, stage), **values})
    except ValidationError as exc:
        raise RecipeError(describe(recipe.path, exc, REGISTRY[stage].params, prefix=f"search.vary ({stage})")) from None


def _replaces_last(recipe: Recipe) -> bool:
    """A trial replaces the recipe's last stage when that stage quantizes; otherwise it is appended."""
    last = REGISTRY[recipe.stages[-1].name]
    return last.precision is not None and last.precision.quantized


def _base_params(recipe: Recipe, stage: str) -> dict[str, Any]:
    """The recipe's own parameters for ``stage`` when its last stage is that stage, else the stage's defaults."""
    last = recipe.stages[-1]
    return last.params.model_dump(mode="json") if last.name == stage else {}


# ---- running the trials -------------------------------------------------------------------------------------


def run(ctx: RunContext, validated: Validated, targets: Sequence[Target]) -> Searched:
    """Run the trials in order until one is within the budget on every target's engine or ``max_trials`` ran."""
    recipe = ctx.recipe
    spec, budget = recipe.settings.search, recipe.settings.budget
    assert spec is not None
    prefix = recipe.stages[:-1] if _replaces_last(recipe) else recipe.stages
    paths = _paths(validated.records, lambda c: c.row)
    ran = [r.stage for r in validated.records if r.passed]
    if ran[: len(prefix)] != [c.name for c in prefix]:
        return Searched([], {}, paths, f"not run: the stages before the trials did not all pass ({validated.skip_reason or 'a stage failed'})")
    several = len(spec.stage) > 1
    trials: list[TrialSummary] = []
    records: dict[int, StageRecord] = {}
    done: dict[str, StageRecord] = {}  # (stage, parameters) -> its record: a trial already run is not run again
    note = ""
    for variant in variants(recipe):
        if len(trials) >= spec.max_trials:
            note = f"stopped at max_trials ({spec.max_trials}) with no trial within the budget on every target"
            break
        excluded = _worst(ctx, prefix, variant, budget, done) if variant.exclude else ()
        base = _base_params(recipe, variant.stage)
        params = {**base, **dict(variant.values), "nodes_to_exclude": [*base.get("nodes_to_exclude", ()), *excluded]}
        if _fingerprint(variant.stage, params) in done:
            continue  # e.g. more nodes to exclude than the setting quantized
        index = len(trials) + 1
        record = _trial(ctx, prefix, variant.stage, params, budget, f"trial {index}")
        done[_fingerprint(variant.stage, params)] = record
        record = _on_trial_rows(record, index)
        records[index] = record
        trials.append(_summary(index, variant.label(several, excluded), record, budget))
        paths.update(_paths([record], lambda c: c.row))
        if _met(trials, targets):
            note = f"stopped at trial {index}: within the budget on every target's engine"
            break
    count = f"{len(trials)} trial" + ("" if len(trials) == 1 else "s")
    return Searched(trials, records, paths, f"{count}; " + (note or "every variant tried"))


def _fingerprint(stage: str, params: dict[str, Any]) -> str:
    return json.dumps([stage, params], sort_keys=True)


def _worst(ctx: RunContext, prefix: Sequence[StageConfig], variant: Variant, budget: BudgetSpec,
           done: dict[str, StageRecord]) -> tuple[str, ...]:
    """The ``variant.exclude`` nodes ranked worst by the per-layer error of the same setting with none excluded
    (that trial's record when it ran; else it runs now, cached, without counting as a trial)."""
    base = _base_params(ctx.recipe, variant.stage)
    params = {**base, **dict(variant.values), "nodes_to_exclude": list(base.get("nodes_to_exclude", ()))}
    record = done.get(_fingerprint(variant.stage, params))
    if record is None:
        record = _trial(ctx, prefix, variant.stage, params, budget, "per-layer error")
    layers = record.layer_errors.layers if record.layer_errors is not None else ()
    return tuple(layer.node for layer in layers[: variant.exclude])


def _trial(ctx: RunContext, prefix: Sequence[StageConfig], stage: str, params: dict[str, Any], budget: BudgetSpec,
           label: str) -> StageRecord:
    """One trial: the recipe's stages before it (cached) and the trial stage, through the pipeline."""
    from workbench import pipeline

    spec = REGISTRY[stage]
    precision = spec.precision or (prefix[-1].precision if prefix else FP32)
    accept = precision.accept.model_copy(
        update={"max_accuracy_drop": budget.max_accuracy_drop, "min_agreement": budget.min_agreement}
    )
    config = StageConfig(stage, spec.params.model_validate(params), accept, precision)
    recipe = dataclasses.replace(ctx.recipe, stages=(*prefix, config))
    trial_ctx = dataclasses.replace(ctx, recipe=recipe, progress=_TrialProgress(ctx.progress, stage, label))
    for name in ("cache", "pool", "evaluation", "versions"):  # one cache, one runner per file, one evaluation set
        if name in ctx.__dict__:
            trial_ctx.__dict__[name] = ctx.__dict__[name]
    return pipeline.run(trial_ctx).records[-1]


def _on_trial_rows(record: StageRecord, index: int) -> StageRecord:
    """The trial's record with its checks named ``<engine>:trial<N>``."""
    checks = tuple(c.model_copy(update={"row": trial_row(c.engine, index)}) for c in record.checks)
    return record.model_copy(update={"checks": checks})


def _summary(index: int, label: str, record: StageRecord, budget: BudgetSpec) -> TrialSummary:
    figures = []
    for c in record.checks:
        comparison = c.check.comparison if c.check is not None else None
        problem = c.not_applicable or c.error
        if problem is None and c.padding is not None and not c.padding.passed:
            problem = "padded batches: " + "; ".join(c.padding.failures)
        if problem is None and comparison is not None and not within(comparison, budget):
            problem = over_budget(comparison, budget)
        figures.append(EngineFigures(
            row=c.row,
            accuracy_drop=comparison.accuracy_drop if comparison else None,
            agreement=comparison.agreement if comparison else None,
            within_budget=problem is None and comparison is not None,
            problem=problem,
        ))
    art = record.artifact
    return TrialSummary(
        index=index, label=label, stage=record.stage, params=record.params,
        cached=record.cached and all(c.cached for c in record.checks),
        file=art.file if art else None, bytes=art.bytes if art else None, error=record.error, engines=tuple(figures),
        layer_errors=record.layer_errors,
    )


def _met(trials: Sequence[TrialSummary], targets: Sequence[Target]) -> bool:
    """Some trial is within the budget on each target's engine."""
    return all(any(f.within_budget and f.row.split(":")[0] == t.engine for s in trials for f in s.engines)
               for t in targets)


def _paths(records: Sequence[StageRecord], row: Callable[[EngineCheck], str]) -> dict[str, Path]:
    return {row(c): r.artifact.path for r in records if r.artifact is not None and r.artifact.path is not None
            for c in r.checks}


class _TrialProgress(Progress):
    """A trial's progress: only its own stage is shown, as one line named after the trial."""

    def __init__(self, parent: Progress, stage: str, label: str):
        self.parent, self.stage_name, self.label = parent, stage, label

    def stage(self, name: str) -> None:
        if name == self.stage_name:
            self.parent.stage(self.label)

    def done(self, name: str, outcome: str) -> None:
        if name == self.stage_name:
            self.parent.done(self.label, outcome)

    def validating(self, name: str, total: int) -> Callable[[int], None]:
        if name.endswith(":" + self.stage_name):
            return self.parent.validating(self.label, total)
        return lambda n: None


# ---- the trials as benchmark contenders ---------------------------------------------------------------------


def planned(searched: Searched, ctx: RunContext, records: Sequence[StageRecord]) -> list[Planned]:
    """A contender per trial and engine (``stage`` None, so the suite's tuning, profile and length chart keep to
    the recipe's own stages); a trial whose graph an earlier row has on that engine takes that row's figures."""
    from workbench.runtimes import ENGINES
    from workbench.timing.suite import Planned

    runtimes = {r.name: r for r in ctx.recipe.runtimes}
    seen = {(c.engine, r.artifact.graph_sha256): c.row for r in records if r.artifact for c in r.checks
            if c.ran and c.same_graph_as is None}
    out = []
    for record in searched.records.values():
        assert record.artifact is not None or not record.checks
        for check in (c for c in record.checks if c.ran):
            assert record.artifact is not None and record.artifact.path is not None
            runtime, path, row = runtimes[check.engine], record.artifact.path, check.row
            same = seen.setdefault((check.engine, record.artifact.graph_sha256), row)
            identity = {"row": row, "sha256": record.artifact.sha256, "version": ENGINES[runtime.name].version(),
                        "params": runtime.params.model_dump(mode="json")}
            build = lambda rt=runtime, st=record.stage, p=path, name=row: _named(ctx.pool.artifact(rt.name, rt.params, st, p), name)  # noqa: E731,E501
            out.append(Planned(row, runtime.name, None, record.precision, identity, build, path, runtime.params,
                               None if same == row else same))
    return out


def _named(runner: Runner, name: str) -> Runner:
    """The pool's runner for a trial's file, named after the trial's row (the timing tables key on it)."""
    runner.name = name
    return runner
