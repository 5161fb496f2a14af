"""Ratios of timings with their uncertainty, from interleaved blocks; which contender is fastest, if any.

Contenders are timed in turns of short blocks (``timing.measure``), so block i of A and block i of B come
from the same stretch of time: they are resampled together. A ratio's interval is a percentile bootstrap
over blocks (seeded, 2,000 resamples) of median(A's block medians) / median(B's block medians). Its
coverage depends on the number of blocks: simulated with 5% noise per block, a 95% interval held the true
ratio 75% of the time with 3 blocks, 93-95% with 6-8, 96-97% with 12-20; take six turns or more. A claim ("A is faster", "chosen") stands only when the interval excludes 1 (and a 2% band
around it, see ``MARGIN``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2_000
LEVEL = 0.95
SEED = 0
# Differences under 2% are not claimed: two equal sleepers measured 0.1% apart over three blocks with a
# bootstrap interval (1.0006-1.0016) that excluded 1; no decision should rest on such a gap.
MARGIN = 0.02
# Stability against the reference workload: its same-block medians over its quiet figure (see load.drift).
REFERENCE_SLOWED = 1.25
SPREAD_LIMIT = 1.25  # a contender's slowest over fastest block median (itself, beside the reference rule)


@dataclass(frozen=True)
class Interval:
    """A ratio with its bootstrap interval; ``estimate`` is the ratio of the medians of all blocks."""

    estimate: float
    low: float
    high: float
    level: float
    blocks: int

    @property
    def distinguishable(self) -> bool:
        return distinguishable(self)

    def __str__(self) -> str:
        return f"{self.estimate:.3g}x ({self.low:.3g}-{self.high:.3g})"


def block_medians(runs_per_block: Sequence[Sequence[float]]) -> np.ndarray:
    """Each block's median (one per turn, in turn order): the unit the bootstrap resamples."""
    if any(len(runs) == 0 for runs in runs_per_block):
        raise ValueError("every block needs at least one run: an empty block would shift the pairing of turns")
    return np.array([float(np.median(runs)) for runs in runs_per_block])


def ratio_interval(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> Interval:
    """median(a) / median(b) with a paired bootstrap interval over blocks; ``a`` and ``b`` are block medians.

    Blocks are paired by turn: when one contender took more turns, only the turns both took are used.
    For a speed-up of B over A (how many times faster B is), pass A's times as ``a``.
    """
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("ratio_interval needs at least one block of each contender")
    x, y = np.asarray(a[:n], dtype=float), np.asarray(b[:n], dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))  # the same blocks for both: the pairing in time is kept
    ratios = np.median(x[picks], axis=1) / np.median(y[picks], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Interval(float(np.median(x) / np.median(y)), float(low), float(high), level, n)


def distinguishable(interval: Interval, *, margin: float = MARGIN) -> bool:
    """The interval excludes 1 and every ratio within ``margin`` of it: the speeds differ beyond the blocks' spread."""
    return interval.low > 1.0 + margin or interval.high < 1.0 / (1.0 + margin)


@dataclass(frozen=True)
class Fastest:
    """The fastest contender when its lead is distinguishable, else ``winner`` is None and the tie is named."""

    winner: str | None
    runner_up: str | None
    lead: Interval | None  # runner-up's time over the winner's: how many times faster the winner is
    tied: tuple[str, ...]  # the leader and the runner-up when not distinguishable (else empty)

    def __str__(self) -> str:
        if self.lead is None:
            return f"{self.winner} (the only contender)"
        if self.winner is not None:
            return f"{self.winner}, {self.lead} faster than {self.runner_up}"
        return f"not distinguishable: {' and '.join(self.tied)} ({self.lead})"


def fastest(
    contenders: Mapping[str, Sequence[float]],
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> Fastest:
    """The contender with the lowest median block time, claimed only when its lead over the runner-up is clear."""
    if not contenders:
        raise ValueError("fastest needs at least one contender")
    order = sorted(contenders, key=lambda name: float(np.median(contenders[name])))
    if len(order) == 1:
        return Fastest(order[0], None, None, ())
    leader, second = order[0], order[1]
    lead = ratio_interval(contenders[second], contenders[leader], resamples=resamples, level=level, seed=seed)
    if distinguishable(lead):
        return Fastest(leader, second, lead, ())
    return Fastest(None, second, lead, (leader, second))


@dataclass(frozen=True)
class Stability:
    """Whether a contender's figure for one case can be trusted, and why not."""

    stable: bool
    spread: float  # its slowest over its fastest block median
    reference_slowdown: float  # the reference's median block, in the contender's turns, over its quiet figure
    slowed_blocks: int  # turns in which the reference ran more than REFERENCE_SLOWED x its quiet figure
    reason: str

    def __bool__(self) -> bool:
        return self.stable


def stability(
    blocks: Sequence[float],
    reference_blocks: Sequence[float],
    *,
    quiet_reference_s: float,
    slowed: float = REFERENCE_SLOWED,
    spread_limit: float = SPREAD_LIMIT,
) -> Stability:
    """A contender's block medians judged against itself (spread) and against the reference in the same turns.

    A contender slowed for the whole case agrees with itself; the reference, timed in the same turns, shows
    the slowdown against its quiet figure. Unstable when the reference was slowed in half of the turns or
    more, or when the contender's own blocks spread beyond ``spread_limit``.
    """
    n = min(len(blocks), len(reference_blocks))
    if n == 0:
        raise ValueError("stability needs at least one block of the contender and of the reference")
    own, ref = np.asarray(blocks[:n], dtype=float), np.asarray(reference_blocks[:n], dtype=float) / quiet_reference_s
    spread = float(own.max() / own.min())
    slow = int((ref > slowed).sum())
    problems = []
    if 2 * slow >= n:
        problems.append(f"the reference ran over {slowed:.2f}x its quiet time in {slow} of {n} turns")
    if spread > spread_limit:
        problems.append(f"its blocks spread {spread:.2f}x (limit {spread_limit:.2f}x)")
    figures = f"spread {spread:.2f}x, reference {float(np.median(ref)):.2f}x quiet over {n} turns"
    reason = ("unstable: " + "; ".join(problems) + f" ({figures})") if problems else f"stable: {figures}"
    return Stability(not problems, spread, float(np.median(ref)), slow, reason)
