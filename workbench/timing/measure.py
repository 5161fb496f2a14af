"""Latency and throughput of runners (any engine): same inputs, same threads, one process.

Contenders are timed in turns of short blocks, so the machine's noise falls on all of them alike and
every ratio comes from the same stretch of time. Warm-up calls are not counted; turns go on until every
contender's median is stable or the time budget is spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from workbench import data
from workbench.runtimes import REFERENCE, Runner

Feeds = dict[str, np.ndarray]

WARMUP = 1  # untimed calls before the first turn (each block adds one more, see measure)
MIN_RUNS = 6
BLOCKS = 3  # at least three turns each, so slow drifts of the machine fall on every contender
MIN_BLOCK_RUNS = 2
MAX_BLOCK_RUNS = 10_000
SETTLE_S = 0.02  # pause between blocks: lets the last contender's spinning worker threads go to sleep
STABLE_WITHIN = 0.02  # the median of all runs and of the later half agree within 2%


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    length: int


@dataclass(frozen=True)
class Timing:
    contender: str
    case: str
    batch: int
    length: int
    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float
    stable: bool

    @property
    def samples_per_s(self) -> float:
        return self.batch / (self.median_ms / 1000)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "samples_per_s": self.samples_per_s}


def inputs(case: Case, model_inputs: Sequence[data.InputLike], *, vocab_size: int, seed: int = 0) -> Feeds:
    """Seeded random token ids of the case's shape (no padding: the mask is all ones), one array per input."""
    rng = np.random.default_rng([seed, case.batch, case.length])
    tokens = rng.integers(0, vocab_size, size=(case.batch, case.length))
    return data.feeds(tokens, np.ones_like(tokens), model_inputs)


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
            block_end = time.perf_counter() + block_s
            for _ in range(MAX_BLOCK_RUNS):
                start = time.perf_counter()
                contender.infer(feeds)
                end = time.perf_counter()
                runs.append(end - start)
                if end >= block_end and len(runs) >= (rounds + 1) * MIN_BLOCK_RUNS:
                    break
        rounds += 1
        if rounds >= BLOCKS:
            if time.perf_counter() > deadline:
                break
            active = [c for c in active if not _stable(samples[c.name])]
    return [_timing(c.name, case, samples[c.name], _stable(samples[c.name])) for c in contenders]


def _stable(runs: list[float]) -> bool:
    if len(runs) < MIN_RUNS:
        return False
    whole, later = np.median(runs), np.median(runs[len(runs) // 2 :])
    return bool(abs(later - whole) <= STABLE_WITHIN * whole)


def _timing(name: str, case: Case, runs: list[float], stable: bool) -> Timing:
    ms = np.array(runs) * 1000
    q1, q3 = np.percentile(ms, [25, 75])
    return Timing(
        name,
        case.name,
        case.batch,
        case.length,
        len(ms),
        float(np.median(ms)),
        float(np.percentile(ms, 90)),
        float(ms.min()),
        float(ms.max()),
        float(q3 - q1),
        stable,
    )


def run_cases(
    contenders: Sequence[Runner],
    cases: Sequence[Case],
    model_inputs: Sequence[data.InputLike],
    *,
    vocab_size: int,
    budget_s: float,
    on_block: Callable[[Case, str], None] | None = None,
) -> list[Timing]:
    timings = []
    for case in cases:
        feeds = inputs(case, model_inputs, vocab_size=vocab_size)
        note = (lambda name, c=case: on_block(c, name)) if on_block else None
        timings += measure(contenders, case, feeds, budget_s=budget_s, on_block=note)
    return timings


def speedups(timings: Sequence[Timing], baseline: str = REFERENCE) -> dict[tuple[str, str], float]:
    """(contender, case) -> baseline median / contender median, from timings of one run only."""
    base = {t.case: t.median_ms for t in timings if t.contender == baseline}
    return {(t.contender, t.case): base[t.case] / t.median_ms for t in timings if t.case in base}
