"""Counts the hardening tests establish, printed at the end of a run and checked against the README."""

from __future__ import annotations

from collections import Counter

FUZZ_EXAMPLES = 400  # recipe fuzz cases per run, split over the two fuzz tests
counts: Counter[str] = Counter()


def record(what: str, n: int = 1) -> None:
    counts[what] += n
