"""Tuning: try an engine's grid of load options (its ``Tuner`` hook) on one artifact, keep the fastest option set
whose outputs are bit-identical to the default one's, and save it beside the artifact.

Engine-agnostic: the grid, how to load a file with options and how options read come from the engine.
Inference code loads the saved choice with ``workbench.runtimes.load_tuned(path)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.errors import InputError
from workbench.feeds import FeedSpec
from workbench.results import Case, Load, Ratio, Trial, Tuning
from workbench.runtimes import EngineParams, EngineSpec, NotApplicable, Runner, row_name, tuned_path
from workbench.runtimes.base import first_of
from workbench.store.files import write_atomic
from workbench.timing import measure, stats


def choose(trials: Sequence[Trial]) -> int:
    """The index of the fastest trial whose outputs are identical to the default's (the first trial)."""
    return min((i for i, t in enumerate(trials) if t.identical), key=lambda i: trials[i].median_ms)


def decide(trials: Sequence[Trial], quiet: Load) -> tuple[int, Ratio | None, str]:
    """The trial to keep: the fastest identical one only when it beats the default beyond its interval and the
    machine was quiet; else the default. With the interval, and the reason in words."""
    best = choose(trials)
    if best == 0:
        return 0, None, "the default configuration was the fastest with identical outputs"
    default, fastest = trials[0], trials[best]
    gain = Ratio(value=default.median_ms / fastest.median_ms)
    if default.block_medians_ms and fastest.block_medians_ms:
        interval = stats.ratio_interval(default.block_medians_ms, fastest.block_medians_ms)
        gain = Ratio(value=interval.estimate, low=interval.low, high=interval.high)
    if not quiet.quiet:
        return 0, gain, f"nothing chosen: the machine was busy while tuning ({quiet.reason})"
    if gain.low is not None and gain.low <= 1 + stats.MARGIN:  # faster beyond the interval, or not at all
        return 0, gain, f"default kept: {fastest.label} is not faster beyond its interval ({gain})"
    return best, gain, f"{fastest.label}: {gain} the default's speed"


def identical_to_first(runners: Sequence[Runner], feed: FeedSpec) -> list[bool | None]:
    """Whether each runner's outputs equal the first one's, bit for bit, on probes of several shapes; None for an
    option set the engine loaded but cannot run (the first, the default, must run: else an InputError)."""
    probes = feed.probes()
    doing = "checking that tuned options give identical outputs"
    outputs: list[list[np.ndarray] | None] = []
    for i, runner in enumerate(runners):
        try:
            outputs.append([first_of(measure.first_call(runner, feeds, doing)) for feeds in probes])
        except InputError:
            if i == 0:
                raise
            outputs.append(None)
    first = outputs[0]
    assert first is not None
    return [None if out is None else all(np.array_equal(a, b) for a, b in zip(out, first)) for out in outputs]


def tune(
    spec: EngineSpec,
    params: EngineParams,
    path: Path,
    stage: str,
    case: Case,
    feed: FeedSpec,
    *,
    threads: int,
    budget_s: float,
) -> Tuning:
    """Time every option set of the engine's grid round-robin on ``case``; outputs compared on probes of several
    shapes. An option set the engine refuses, at load or on the probes, is left out."""
    assert spec.tuner is not None, f"engine {spec.name!r} has no tuning hook"
    configs, runners = [], []
    for i, options in enumerate(spec.tuner.grid(threads)):
        try:
            runner = spec.tuner.load(path, params, threads, options)
        except NotApplicable:
            if i == 0:
                raise
            continue
        runner.name = f"config {i}"
        configs.append(options)
        runners.append(runner)
    runs = identical_to_first(runners, feed)
    keep = [i for i, same in enumerate(runs) if same is not None]  # an option set that cannot run is left out
    configs, runners, identical = [configs[i] for i in keep], [runners[i] for i in keep], [runs[i] for i in keep]
    timed = measure.measure_case(
        runners, case, feed.random(case.batch, case.length), budget_s=budget_s, threads=threads
    )
    trials = tuple(
        Trial(
            options=options,
            label=spec.tuner.label(options),
            median_ms=t.median_ms,
            identical=bool(same),
            block_medians_ms=t.block_medians_ms,
        )
        for options, t, same in zip(configs, timed.timings, identical)
    )
    chosen, gain, claim = decide(trials, timed.load)
    return Tuning(
        row=row_name(spec.name, stage),
        engine=spec.name,
        stage=stage,
        case=case,
        trials=trials,
        chosen=chosen,
        gain_interval=gain,
        load=timed.load,
        claim=claim,
    )


def save(tuning: Tuning, params: EngineParams, artifact: Path) -> Path | None:
    """Write the chosen options as ``<artifact>.session.json`` (``runtimes.load_tuned`` reads it); nothing when the
    machine was busy while tuning (a choice made under load would be inherited by every deployment)."""
    if tuning.load is not None and not tuning.load.quiet:
        return None
    text = json.dumps(
        {
            "engine": tuning.engine,
            "params": params.model_dump(mode="json"),
            "options": tuning.best.options,
            "measured": tuning.model_dump(mode="json"),
        },
        indent=2,
    )
    return write_atomic(tuned_path(artifact), lambda tmp: tmp.write_text(text + "\n"))
