"""Ship: for each target (an engine at one batch and length), the artifact to ship, and why each other one lost.

``decide`` is pure: the run (its stages, checks and benchmarks), the search's trials, the targets and the
budget in; a typed ``Decision`` out. Among the artifacts that ran on the target's engine (every stage's row
and every trial) and stayed within the budget, the fastest at the target wins, but "faster" is claimed only
when the speed ratio's interval excludes 1; every candidate not distinguishably slower than the fastest is
a tie, and the smallest file among the ties ships. ``targets`` reads the recipe's targets (defaults filled
in, engines checked); ``write`` copies the chosen files to ``ship/<target>.onnx`` with their session settings.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from workbench.decide.sensitivity import Sensitivity
from workbench.errors import RecipeError
from workbench.ratio import Ratio
from workbench.recipe import BudgetSpec, Recipe

if TYPE_CHECKING:
    from workbench.results import Bench, Case, Comparison, EngineCheck, Run

Outcome = Literal["shipped", "over budget", "slower", "indistinguishable and bigger", "not timed", "failed"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(Model):
    """A way the model will be called: an engine at one batch and sequence length, with a thread count."""

    engine: str
    batch: int
    length: int
    threads: int

    @property
    def name(self) -> str:
        """The shipped file's name: ``<engine>_b<batch>_l<length>``."""
        return f"{self.engine}_b{self.batch}_l{self.length}"

    def __str__(self) -> str:
        return f"{self.engine} b{self.batch} l{self.length}"


class Candidate(Model):
    """One artifact on the target's engine: its figures there and how it fared."""

    row: str
    trial: int | None = None  # the search trial it came from (None: a stage of the recipe)
    bytes: int | None
    accuracy_drop: float | None
    agreement: float | None
    within_budget: bool
    median_ms: float | None
    vs_pytorch: Ratio | None  # PyTorch fp32 at the target over this
    outcome: Outcome
    why: str  # one line


class Choice(Model):
    """What to ship for one target (``shipped`` None: nothing within the budget ran there)."""

    target: Target
    shipped: str | None
    file: str | None  # ship/<target>.onnx in the report folder
    reason: str
    candidates: tuple[Candidate, ...]
    threads_note: str | None = None  # the target's threads differ from the threads the run timed with

    @property
    def chosen(self) -> Candidate | None:
        return next((c for c in self.candidates if c.outcome == "shipped"), None)


class EngineFigures(Model):
    """A trial's artifact on one engine: how far from PyTorch fp32 it was, or why it did not run."""

    row: str
    accuracy_drop: float | None = None
    agreement: float | None = None
    within_budget: bool = False
    problem: str | None = None  # not applicable, the engine's error, or a failed padding check


class TrialSummary(Model):
    """One search trial: the stage and parameters it tried, what it made, how it checked out on each engine."""

    index: int
    label: str  # the varied parameters in the report's words
    stage: str
    params: dict[str, Any]
    cached: bool
    file: str | None = None
    bytes: int | None = None
    error: str | None = None  # the stage failed to make an artifact
    engines: tuple[EngineFigures, ...] = ()
    layer_errors: Sensitivity | None = None  # its per-layer error (what exclude_most_sensitive reads)


class Decision(Model):
    """The report's Ship section: a choice per target, the budget it was made under, the search's trials."""

    budget: BudgetSpec
    choices: tuple[Choice, ...]
    trials: tuple[TrialSummary, ...] = ()
    search: str | None = None  # how the search went: trials run, why it stopped (None: no search)


# ---- targets --------------------------------------------------------------------------------------------------


def targets(recipe: Recipe, threads: int) -> tuple[Target, ...]:
    """The recipe's targets with defaults filled in (first engine, the bench headline case, the run's threads);
    a target on an engine the recipe does not run is a RecipeError."""
    settings = recipe.settings
    given = settings.target if isinstance(settings.target, list) else [settings.target]
    engines = [r.name for r in recipe.runtimes]
    headline = max(settings.bench.latency_lengths)
    out = []
    for index, spec in enumerate(given or [None]):
        engine = spec.engine if spec and spec.engine else engines[0]
        if engine not in engines:
            raise RecipeError(
                f"{recipe.path}: target[{index}].engine: {engine!r} is not among the recipe's runtimes "
                f"({', '.join(engines)}); add it to runtimes or target one of those"
            )
        batch, length = (spec.batch, spec.length or headline) if spec else (1, headline)
        out.append(Target(engine=engine, batch=batch, length=length, threads=(spec and spec.threads) or threads))
    if len({t.name for t in out}) != len(out):
        raise RecipeError(f"{recipe.path}: target: each (engine, batch, length) may be named once")
    return tuple(out)


def target_cases(recipe: Recipe) -> list[Case]:
    """The (batch, length) cases the benchmarks must time for the recipe's targets (threads do not matter here)."""
    from workbench.results import Case

    cases = [Case(batch=t.batch, length=t.length) for t in targets(recipe, threads=1)]
    return list(dict.fromkeys(cases))


# ---- the decision ---------------------------------------------------------------------------------------------


def within(comparison: Comparison, budget: BudgetSpec) -> bool:
    """The accuracy drop and the top-1 agreement against PyTorch fp32 are both within the budget."""
    return comparison.accuracy_drop <= budget.max_accuracy_drop + 1e-12 and comparison.agreement >= budget.min_agreement


def over_budget(comparison: Comparison, budget: BudgetSpec) -> str:
    """Which limit a comparison misses, in figures."""
    misses = []
    if comparison.accuracy_drop > budget.max_accuracy_drop + 1e-12:
        misses.append(f"accuracy drop {100 * comparison.accuracy_drop:.2f} points > {100 * budget.max_accuracy_drop:.2f}")
    if comparison.agreement < budget.min_agreement:
        misses.append(f"agreement {comparison.agreement:.2%} < {budget.min_agreement:.2%}")
    return "; ".join(misses)


Found = tuple[str, "int | None", "int | None", "EngineCheck"]  # row, trial, bytes, check


def candidate_checks(
    run: Run, trials: Sequence[TrialSummary], trial_checks: Mapping[int, Sequence[EngineCheck]], engine: str
) -> list[Found]:
    """(row, trial, bytes, check) for every stage's row and every trial's that ran on ``engine``."""
    out: list[Found] = [
        (c.row, None, s.artifact.bytes, c) for s in run.stages if s.artifact is not None for c in s.checks
        if c.engine == engine and c.not_applicable is None
    ]
    sizes = {t.index: t.bytes for t in trials}
    for index, checks in trial_checks.items():
        out += [(c.row, index, sizes.get(index), c) for c in checks if c.engine == engine and c.not_applicable is None]
    return out


def decide(
    run: Run,
    targets: Sequence[Target],
    budget: BudgetSpec,
    *,
    trials: Sequence[TrialSummary] = (),
    trial_checks: Mapping[int, Sequence[EngineCheck]] | None = None,
    search: str | None = None,
) -> Decision:
    """The Ship decision for every target, from the run's figures (and the search's trials and their checks)."""
    choices = tuple(_choose(run, t, budget, trials, trial_checks or {}) for t in targets)
    return Decision(budget=budget, choices=choices, trials=tuple(trials), search=search)


def _choose(
    run: Run,
    target: Target,
    budget: BudgetSpec,
    trials: Sequence[TrialSummary],
    trial_checks: Mapping[int, Sequence[EngineCheck]],
) -> Choice:
    from workbench.results import Case

    bench, case = run.bench, Case(batch=target.batch, length=target.length)
    first: list[Candidate] = []
    for row, trial, size, check in candidate_checks(run, trials, trial_checks, target.engine):
        first.append(_judged(row, trial, size, check, budget, bench, case))
    timed = sorted((c for c in first if c.outcome == "shipped"), key=lambda c: c.median_ms or 0.0)
    note = None
    if bench is not None and bench.threads != target.threads:
        note = f"timed at the run's {bench.threads} threads; the target asks for {target.threads}"
    if not timed:
        why = "no artifact within the budget was timed at this case" if first else "no artifact ran on this engine"
        return Choice(target=target, shipped=None, file=None, reason=why, candidates=tuple(first), threads_note=note)
    assert bench is not None
    leader = timed[0]
    ties = [c for c in timed if c is leader or not _faster(bench, leader.row, c.row, case)]
    chosen = min(ties, key=lambda c: (c.bytes if c.bytes is not None else 2**62, c.median_ms or 0.0))
    final = [_lost(c, chosen, leader, ties, bench, case) for c in first]
    return Choice(
        target=target,
        shipped=chosen.row,
        file=f"ship/{target.name}.onnx",
        reason=_reason(chosen, leader, ties),
        candidates=tuple(sorted(final, key=_order)),
        threads_note=note,
    )


def _judged(row: str, trial: int | None, size: int | None, check: EngineCheck, budget: BudgetSpec,
            bench: Bench | None, case: Case) -> Candidate:
    """A candidate's figures; outcome "shipped" for now when it is within the budget and timed (decided later)."""
    comparison = check.check.comparison if check.check is not None else None
    timing = bench.timing(row, case) if bench is not None else None
    ratio = speedup(bench, row, case) if bench is not None else None
    base = {
        "row": row, "trial": trial, "bytes": size,
        "accuracy_drop": comparison.accuracy_drop if comparison else None,
        "agreement": comparison.agreement if comparison else None,
        "median_ms": timing.median_ms if timing else None,
        "vs_pytorch": Ratio(value=ratio.value, low=ratio.low, high=ratio.high) if ratio else None,
    }
    if comparison is None:
        return Candidate(**base, within_budget=False, outcome="failed", why=check.error or "not checked")
    if not within(comparison, budget):
        return Candidate(**base, within_budget=False, outcome="over budget", why=over_budget(comparison, budget))
    if check.padding is not None and not check.padding.passed:
        why = "padded batches: " + "; ".join(check.padding.failures)
        return Candidate(**base, within_budget=False, outcome="failed", why=why)
    if timing is None:
        return Candidate(**base, within_budget=True, outcome="not timed", why=f"not timed at b{case.batch} l{case.length}")
    return Candidate(**base, within_budget=True, outcome="shipped", why="")


def _faster(bench: Bench, row: str, other: str, case: Case) -> bool:
    """``row`` is faster than ``other`` at ``case`` beyond the ratio's interval (no interval: no claim)."""
    ratio = speedup(bench, row, case, other)
    return ratio is not None and ratio.value > 1 and bool(ratio.distinguishable)


def speedup(bench: Bench, row: str, case: Case, baseline: str | None = None) -> Ratio | None:
    """``baseline``'s median over ``row``'s at ``case`` (PyTorch fp32 by default), with its interval (Bench.speedup)."""
    from workbench.runtimes import REFERENCE

    return bench.speedup(row, case, baseline or REFERENCE)


def _lost(c: Candidate, chosen: Candidate, leader: Candidate, ties: list[Candidate], bench: Bench, case: Case) -> Candidate:
    """The candidate with its final outcome and the one line on why it lost."""
    if c.outcome != "shipped":
        return c
    if c is chosen:
        return c.model_copy(update={"why": _reason(chosen, leader, ties)})
    if c not in ties:
        ratio = speedup(bench, leader.row, case, c.row)
        assert ratio is not None
        return c.model_copy(update={"outcome": "slower", "why": f"{leader.row} is {_ratio_text(ratio)} faster"})
    size = f"{c.bytes:,} bytes against {chosen.bytes:,}" if c.bytes and chosen.bytes else "not smaller"
    ratio = speedup(bench, leader.row, case, c.row)
    speed = f"{leader.row} ran {_ratio_text(ratio)} as fast, an interval that does not exclude 1" if ratio else "untimed"
    if c is leader:
        speed = f"the fastest median, but {chosen.row} cannot be told apart from it"
    return c.model_copy(update={"outcome": "indistinguishable and bigger", "why": f"{speed}; {size}"})


def _reason(chosen: Candidate, leader: Candidate, ties: list[Candidate]) -> str:
    if len(ties) == 1:
        return "within the budget, and faster than every other candidate within it beyond the interval"
    if chosen is leader:
        return "within the budget, the fastest median and the smallest of those it cannot be told apart from"
    return f"within the budget, as fast as {leader.row} within the interval, and the smallest of those"


def _ratio_text(ratio: Any) -> str:
    interval = f" [{ratio.low:.2f}-{ratio.high:.2f}]" if ratio.low is not None and ratio.high is not None else ""
    return f"{ratio.value:.2f}x{interval}"


def _order(c: Candidate) -> tuple[int, float]:
    rank = ["shipped", "indistinguishable and bigger", "slower", "not timed", "over budget", "failed"].index(c.outcome)
    return rank, c.median_ms if c.median_ms is not None else float("inf")


# ---- the shipped files ----------------------------------------------------------------------------------------


def write(decision: Decision, paths: Mapping[str, Path], settings: Mapping[str, dict[str, Any]], folder: Path,
          tuned: Mapping[str, dict[str, Any]] | None = None) -> list[Path]:
    """Copy each target's chosen file to ``folder/ship/<target>.onnx`` beside ``<target>.onnx.session.json`` (the
    engine, its parameters, the target's threads and tuned options: what ``runtimes.load_tuned`` reads).

    ``paths``: row -> its ONNX file; ``settings``: engine -> its parameters; ``tuned``: row -> tuned options.
    """
    written = []
    for choice in decision.choices:
        if choice.shipped is None or choice.file is None:
            continue
        src, dst = paths[choice.shipped], folder / choice.file
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        session = {
            "engine": choice.target.engine,
            "params": dict(settings.get(choice.target.engine, {})),
            "threads": choice.target.threads,
            "options": dict((tuned or {}).get(choice.shipped, {})),
            "case": {"batch": choice.target.batch, "length": choice.target.length},
            "row": choice.shipped,
        }
        (dst.parent / f"{dst.name}.session.json").write_text(json.dumps(session, indent=2) + "\n")
        written.append(dst)
    return written
