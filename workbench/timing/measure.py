"""Latency and throughput of runners (any engine): same inputs, same threads, one process.

Contenders are timed in turns of short blocks, so the machine's noise falls on all of them alike and
every ratio comes from the same stretch of time. Warm-up calls are not counted; turns go on until every
contender's median is stable or the time budget is spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from workbench.feeds import Feeds, FeedSpec
from workbench.results import Case, Timing
from workbench.runtimes import Runner

WARMUP = 1  # untimed calls before the first turn (each block adds one more, see measure)
MIN_RUNS = 6
BLOCKS = 3  # at least three turns each, so slow drifts of the machine fall on every contender
MIN_BLOCK_RUNS = 2
MAX_BLOCK_RUNS = 10_000
SETTLE_S = 0.02  # pause between blocks: lets the last contender's spinning worker threads go to sleep
STABLE_WITHIN = 0.02  # the median of all runs and of the later half agree within 2%


def measure(
    contenders: Sequence[Runner],
    case: Case,
    feeds: Feeds,
    *,
    budget_s: float,
    on_block: Callable[[str], None] | None = None,
) -> list[Timing]:
    """Time every runner on ``feeds`` in turns of short blocks until all medians are stable or the budget is spent.

    Each block starts with a short pause and one untimed call, which absorb what the previous contender
    left behind (onnxruntime's and OpenMP's spinning worker threads, cold caches). After the first
    ``BLOCKS`` turns a contender whose median is stable takes no more turns: the budget goes to the others.
    """
    for contender in contenders:
        for _ in range(WARMUP):
            contender.infer(feeds)
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
            active = [c for c in active if not _stable(samples[c.name])]
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


def run_cases(
    contenders: Sequence[Runner],
    cases: Sequence[Case],
    feed: FeedSpec,
    *,
    budget_s: float,
    on_block: Callable[[Case, str], None] | None = None,
) -> list[Timing]:
    """Every case in turn, each on seeded inputs of its shape (``FeedSpec.random``)."""
    timings = []
    for case in cases:
        note = (lambda name, c=case: on_block(c, name)) if on_block else None
        timings += measure(contenders, case, feed.random(case.batch, case.length), budget_s=budget_s, on_block=note)
    return timings
