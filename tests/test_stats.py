"""Ratio intervals from interleaved blocks of runners of known cost; the fastest claim; stability by the reference."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from workbench.runtimes import Runner
from workbench.timing import load, stats

TIMER = 0.002  # a call's own cost beside its wait (~1 us in 2 ms, doubled): the ratio is 2 up to this


class Waiter(Runner):
    """A runner whose cost is known exactly: it sleeps through ``seconds`` per call and spins the last 0.3 ms.

    A plain sleep overshoots by 50-100 us (2 ms against 4 ms measured 1.96x); pure spinning needs the CPU and
    is preempted on a busy machine. Sleeping then spinning to the deadline is exact and needs little CPU.
    """

    engine = "wait"
    precision = "none"
    input_names = ()

    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        end = time.perf_counter() + self.seconds
        time.sleep(max(0.0, self.seconds - 0.0003))
        while time.perf_counter() < end:
            pass
        return {}


Blocks = dict[str, list[float]]


def interleave(runners: list[Runner], *, blocks: int = 6, block_s: float = 0.03) -> tuple[Blocks, load.LoadReport]:
    """Each runner's block medians, timed in turns as ``timing.measure`` does, and what else ran meanwhile."""
    medians: Blocks = {r.name: [] for r in runners}
    with load.Monitor() as monitor:
        _turns(runners, medians, blocks, block_s)
    assert monitor.report is not None
    return medians, monitor.report


def _turns(runners: list[Runner], medians: Blocks, blocks: int, block_s: float) -> None:
    for _ in range(blocks):
        for runner in runners:
            runner.infer({})
            runs, end = [], time.perf_counter() + block_s
            while time.perf_counter() < end:
                start = time.perf_counter()
                runner.infer({})
                runs.append(time.perf_counter() - start)
            medians[runner.name].append(float(np.median(runs)))


def holds_unless_busy(report: load.LoadReport, check: Callable[[], None]) -> None:
    """Run the checks; a failure while other processes held the CPU is a skip naming the load, never a pass."""
    try:
        check()
    except AssertionError as exc:
        if report.busy:
            pytest.skip(f"machine busy while timing ({report.reason}); the figures were: {exc}")
        raise


def test_known_ratio_lies_in_its_interval_and_is_claimed():
    blocks, report = interleave([Waiter("fast", 0.002), Waiter("slow", 0.004)])

    def check() -> None:
        ratio = stats.ratio_interval(blocks["slow"], blocks["fast"])
        # the truth up to the ~1 us each call costs besides its wait (0.1%)
        assert ratio.low - TIMER <= 2.0 <= ratio.high + TIMER, ratio
        assert ratio.low <= ratio.estimate <= ratio.high and ratio.blocks == 6
        assert ratio.distinguishable
        best = stats.fastest(blocks)
        assert best.winner == "fast" and best.runner_up == "slow" and best.lead is not None
        assert best.lead.low - TIMER <= 2.0 <= best.lead.high + TIMER
        assert str(best).startswith("fast, ") and str(best).endswith(" faster than slow")

    holds_unless_busy(report, check)


def test_equal_runners_are_not_distinguishable():
    blocks, report = interleave([Waiter("a", 0.002), Waiter("b", 0.002)])

    def check() -> None:
        ratio = stats.ratio_interval(blocks["a"], blocks["b"])
        assert ratio.low <= ratio.estimate <= ratio.high and ratio.high - ratio.low < 0.5, ratio
        assert not ratio.distinguishable, ratio
        best = stats.fastest(blocks)
        assert best.winner is None and set(best.tied) == {"a", "b"}
        assert str(best).startswith("not distinguishable: ")

    holds_unless_busy(report, check)


def test_the_interval_covers_the_true_ratio_about_95_times_in_100():
    rng = np.random.default_rng(7)
    noise = lambda: rng.lognormal(0.0, 0.05, size=8)  # noqa: E731  eight blocks, 5% spread each
    covered = [
        (i := stats.ratio_interval(0.003 * noise(), 0.002 * noise(), resamples=500)).low <= 1.5 <= i.high
        for _ in range(200)
    ]
    assert 0.8 <= np.mean(covered) <= 1.0  # the percentile bootstrap over 8 blocks covers about 9 in 10 here


def test_overlapping_contenders_have_no_winner():
    best = stats.fastest({"a": [0.0020, 0.0024, 0.0019], "b": [0.0021, 0.0020, 0.0023], "c": [0.004] * 3})
    assert best.winner is None and best.tied == ("a", "b") and best.runner_up == "b"
    assert stats.fastest({"only": [0.001]}).winner == "only"


def test_a_gap_inside_the_margin_is_not_claimed_even_when_the_interval_excludes_1():
    tight = stats.Interval(1.001, 1.0006, 1.0016, 0.95, 3)  # two equal sleepers, measured once
    assert not stats.distinguishable(tight)
    assert stats.distinguishable(tight, margin=0.0)
    assert stats.distinguishable(stats.Interval(0.9, 0.85, 0.95, 0.95, 6))


def test_blocks_are_resampled_in_pairs_so_a_shared_drift_cancels():
    drift = np.array([1.0, 3.0, 1.0, 2.5, 1.0, 1.8])  # the machine slowed both contenders in the same turns
    a, b = 0.004 * drift, 0.002 * drift
    ratio = stats.ratio_interval(a, b)
    assert ratio.estimate == pytest.approx(2.0)
    assert ratio.high - ratio.low < 0.6, ratio  # unpaired resampling would give about 0.8-4.7
    again = stats.ratio_interval(a, b)
    assert (again.low, again.high) == (ratio.low, ratio.high)  # seeded: the same blocks, the same interval


def test_uneven_turns_use_the_turns_both_took():
    ratio = stats.ratio_interval([0.004, 0.004, 0.004, 0.009], [0.002, 0.002, 0.002])
    assert ratio.blocks == 3 and ratio.estimate == pytest.approx(2.0)


def test_a_contender_slowed_for_the_whole_case_is_caught_by_the_reference():
    steady = [0.0100, 0.0101, 0.0100, 0.0102]  # agrees with itself: stable by its own spread
    loaded_reference = [0.00160, 0.00170, 0.00158, 0.00165]  # 1.6x its quiet 1 ms in the same turns
    slowed = stats.stability(steady, loaded_reference, quiet_reference_s=0.001)
    assert not slowed and slowed.slowed_blocks == 4
    assert slowed.reference_slowdown == pytest.approx(1.625)
    assert "reference ran over 1.25x its quiet time in 4 of 4 turns" in slowed.reason
    quiet = stats.stability(steady, [0.00101, 0.00099, 0.00103, 0.00100], quiet_reference_s=0.001)
    assert quiet and quiet.spread == pytest.approx(1.02)
    jumpy = stats.stability([0.010, 0.016, 0.010, 0.010], [0.001] * 4, quiet_reference_s=0.001)
    assert not jumpy and "spread 1.60x" in jumpy.reason
