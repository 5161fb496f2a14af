"""Benchmarks cached like stages: one entry per suite, keyed by everything its figures depend on.

The key holds each contender's identity (artifact sha256 or the torch model's key, engine, engine
version and parameters), the threads, the cases, the budget, the workbench version and the machine
(CPU model and core count). An unchanged rerun reuses the figures; the report says when they were measured.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from workbench import __version__
from workbench.store.cache import Cache
from workbench.store.files import key
from workbench.timing.suite import BenchResult


def bench_key(contenders: list[dict[str, Any]], spec: dict[str, Any], threads: int, machine: dict[str, str]) -> str:
    return key("bench", __version__, contenders, spec, threads, machine)


def cached(cache: Cache, entry_key: str, measure: Callable[[], BenchResult], *, force: bool) -> BenchResult:
    """The stored suite for ``entry_key``, or ``measure()`` stored under it (always, with ``force``)."""
    folder, _, was_cached = cache.fetch(
        entry_key, lambda scratch, _: (scratch / "bench.json").write_text(json.dumps(measure().to_dict())), force=force
    )
    return BenchResult.from_dict(json.loads((folder / "bench.json").read_text()), cached=was_cached)
