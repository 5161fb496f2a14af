"""Latency and throughput of runners (any engine): same inputs, same threads, one process.

Contenders are timed in turns of short blocks, so the machine's noise falls on all of them alike and
every ratio comes from the same stretch of time. Warm-up calls are not counted; turns go on until every
contender's median is stable or the time budget is spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from workbench.errors import EngineRefused, InputError, failure_text
from workbench.feeds import Feeds, FeedSpec
from workbench.results import Case, Load, Timing
from workbench.timing import load, stats
from workbench.runtimes import Runner

WARMUP = 1  # untimed calls before the first turn (each block adds one more, see measure)
MIN_RUNS = 6
BLOCKS = 6  # at least six turns each: slow drifts fall on every contender, and the bootstrap over blocks holds
# its 95% level (3 blocks covered the true ratio 75% of the time in a simulation, 6-8 blocks 93-95%)
MIN_BLOCK_RUNS = 2
MAX_BLOCK_RUNS = 10_000
SETTLE_S = 0.005  # pause between blocks: lets the last contender's spinning worker threads go to sleep
STABLE_WITHIN = 0.02  # the median of all runs and of the later half agree within 2%


def first_call(runner: Runner, feeds: Feeds, doing: str) -> dict[str, np.ndarray]:
    """``runner.infer(feeds)``; an engine that refuses the inputs is one line naming the row, the shapes and its words
    (an ONNX file cannot take a length past its position table, say), not a traceback. Only the engine's refusal
    is caught: an error of the workbench's own code keeps its traceback."""
    try:
        return runner.infer(feeds)
    except EngineRefused as exc:
        shapes = ", ".join(f"{name} {list(array.shape)}" for name, array in feeds.items())
        raise InputError(
            failure_text(exc, f"{runner.name} failed while {doing} on inputs {shapes}")
            + " (a length past what the model takes? a recipe's model.max_length bounds every timed length)"
        ) from exc


def measure(
    contenders: Sequence[Runner],
    case: Case,
    feeds: Feeds,
    *,
    budget_s: float,
    on_block: Callable[[str], None] | None = None,
    always: Sequence[Runner] = (),
) -> list[Timing]:
    """Time every runner on ``feeds`` in turns of short blocks until all medians are stable or the budget is spent.

    Each block starts with a short pause and one untimed call, which absorb what the previous contender
    left behind (onnxruntime's and OpenMP's spinning worker threads, cold caches). After the first
    ``BLOCKS`` turns a contender whose median is stable takes no more turns: the budget goes to the others.
    ``always`` are among the contenders and take every turn (the reference workload that shows the machine's load).
    """
    keep = {c.name for c in always}
    for contender in contenders:
        for _ in range(WARMUP):
            first_call(contender, feeds, f"timing {case}")
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    blocks: dict[str, list[float]] = {c.name: [] for c in contenders}  # each block's median, in turn order
    block_s = budget_s / (BLOCKS * len(contenders))
    deadline = time.perf_counter() + budget_s
    rounds = 0
    active = list(contenders)
    while active:
        for contender in active:
            if on_block:
                on_block(contender.name)
            time.sleep(SETTLE_S)
            contender.infer(feeds)
            runs = samples[contender.name]
            first = len(runs)
            block_end = time.perf_counter() + block_s
            for _ in range(MAX_BLOCK_RUNS):
                start = time.perf_counter()
                contender.infer(feeds)
                end = time.perf_counter()
                runs.append(end - start)
                if end >= block_end and len(runs) >= (rounds + 1) * MIN_BLOCK_RUNS:
                    break
            blocks[contender.name].append(float(np.median(runs[first:])))
        rounds += 1
        if rounds >= BLOCKS:
            if time.perf_counter() > deadline:
                break
            active = [c for c in active if c.name in keep or not _stable(samples[c.name])]
            if all(c.name in keep for c in active):
                break
    return [_timing(c.name, case, samples[c.name], blocks[c.name], _stable(samples[c.name])) for c in contenders]


def _stable(runs: list[float]) -> bool:
    if len(runs) < MIN_RUNS:
        return False
    whole, later = np.median(runs), np.median(runs[len(runs) // 2 :])
    return bool(abs(later - whole) <= STABLE_WITHIN * whole)


def _timing(name: str, case: Case, runs: list[float], blocks: list[float], stable: bool) -> Timing:
    ms = np.array(runs) * 1000
    q1, q3 = np.percentile(ms, [25, 75])
    return Timing(
        contender=name,
        case=case,
        runs=len(ms),
        median_ms=float(np.median(ms)),
        p90_ms=float(np.percentile(ms, 90)),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        iqr_ms=float(q3 - q1),
        stable=stable,
        block_medians_ms=tuple(1000 * b for b in blocks),
    )


# The reference workload's drift is measured and reported with every case, but it does not flag a case on its own:
# on an idle machine (other processes 0.00 cores) it drifted 1.0-2.4x between turns beside these contenders (their
# worker threads and the caches they leave), which would have flagged every run. Other processes' CPU, read from
# /proc/stat against this process's own, is what flags a busy machine (timing.load.OTHER_CPU_BUSY).
REFERENCE_DRIFT_FLAGS = float("inf")


@dataclass(frozen=True)
class CaseTiming:
    """One case's timings, the reference workload's block medians beside them, and how busy the machine was."""

    timings: list[Timing]
    load: Load


def measure_case(
    contenders: Sequence[Runner],
    case: Case,
    feeds: Feeds,
    *,
    budget_s: float,
    threads: int,
    on_block: Callable[[str], None] | None = None,
) -> CaseTiming:
    """``measure`` with a reference workload in every turn and the machine's CPU watched: other processes' CPU flags
    a busy case; the reference's drift is reported; a contender is stable when its blocks agree with each other."""
    probe = load.ReferenceWorkload(threads=threads)
    try:
        with load.Monitor() as monitor:
            timed = measure([*contenders, probe], case, feeds, budget_s=budget_s, on_block=on_block, always=[probe])
    finally:
        probe.close()
    reference = [t for t in timed if t.contender == probe.name][0].block_medians_ms
    reference = reference[1:] if len(reference) > 2 else reference  # the first turn also pays for warming up
    # the reference's quiet figure is its fastest turn beside these contenders, not a run on its own: timed
    # alone it ran 1.6-1.9x faster than in turns with them on a quiet machine (their worker threads and the
    # caches they leave), which would flag every case. Load that lasts the whole case shows in the CPU that
    # other processes took; load that comes and goes shows as drift against this figure.
    quiet_s = min(reference) / 1000
    assert monitor.report is not None
    verdict = load.verdict(
        monitor.report, [b / 1000 for b in reference], quiet_reference_s=quiet_s, max_drift=REFERENCE_DRIFT_FLAGS
    )
    timings = []
    for t in (t for t in timed if t.contender != probe.name):
        steady = stats.stability(
            t.block_medians_ms[1:], reference, quiet_reference_s=1000 * quiet_s,  # both from the second turn on
            slowed=REFERENCE_DRIFT_FLAGS,
        )
        timings.append(t.model_copy(update={"stable": t.stable and steady.stable}))
    figures = Load(
        case=case,
        quiet=verdict.quiet,
        other_cpu_share=verdict.other_cpu_share,
        reference_drift=verdict.reference_drift,
        reason=verdict.reason,
    )
    return CaseTiming(timings, figures)


def run_cases(
    contenders: Sequence[Runner],
    cases: Sequence[Case],
    feed: FeedSpec,
    *,
    budget_s: float,
    threads: int,
    on_block: Callable[[Case, str], None] | None = None,
) -> tuple[list[Timing], list[Load]]:
    """Every case in turn, each on seeded inputs of its shape (``FeedSpec.random``), with the machine watched."""
    timings, loads = [], []
    for case in cases:
        note = (lambda name, c=case: on_block(c, name)) if on_block else None
        result = measure_case(
            contenders, case, feed.random(case.batch, case.length), budget_s=budget_s, threads=threads, on_block=note
        )
        timings += result.timings
        loads.append(result.load)
    return timings, loads
