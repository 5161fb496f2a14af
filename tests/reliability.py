"""Counts the hardening tests establish, printed at the end of a run and checked against the README.

A test calls ``record()`` in its own body as it establishes a figure; what it records counts only if the
test passes (conftest settles it after the test), so a skipped or failed test adds nothing.
"""

from __future__ import annotations

from collections import Counter

FUZZ_EXAMPLES = 400  # recipe fuzz cases per run, split over the two fuzz tests
counts: Counter[str] = Counter()  # figures established by tests that passed
_pending: Counter[str] = Counter()  # recorded by the test now running


def record(what: str, n: int = 1) -> None:
    _pending[what] += n


def settle(passed: bool) -> Counter[str]:
    """At the end of a test: keep what it recorded if it passed, drop it otherwise; return what it recorded."""
    recorded = Counter(_pending)
    _pending.clear()
    if passed:
        counts.update(recorded)
    return recorded
