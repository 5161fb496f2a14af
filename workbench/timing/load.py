"""Was the machine quiet while we timed? What other processes used the CPU, and how a fixed workload drifted.

Two witnesses, because each misses what the other sees:

- ``Monitor`` reads the machine's CPU time from ``/proc/stat`` (non-idle jiffies over every core) and
  subtracts this process's own CPU time (every thread of it): what is left is what other processes (and the
  hypervisor, as steal) took while we timed, in cores (0..cores). It sees a hog on one core that a
  single-threaded probe, scheduled onto the free core, would not.
- ``ReferenceWorkload`` is a fixed, deterministic ~1 ms computation with the Runner shape, on as many threads
  as the contenders, interleaved with them like any of them; its block medians drifting above its quiet
  figure show load the way the contenders felt it, including what ``/proc/stat`` cannot show (another
  machine's pressure on shared caches and memory, a CPU clocked down).

``verdict`` combines both into ``Quietness``. Thresholds were measured on this machine (2 cores), quiet
and beside ``Hog`` (one busy process per core): see the constants below and ``benchmarks/busy.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import numpy as np

from workbench.runtimes.base import Runner

# Measured here (2026-11, 2 cores): idle machine 0.01 core used by others; one other session's tests 1.1-1.25;
# Hog (a busy process per core) beside a 2-thread torch LSTM 1.4-1.6; the shared machine at load 7-13, 2.0.
OTHER_CPU_BUSY = 0.25  # cores used by other processes (plus steal), averaged over the monitored time
# The 2-thread reference: 0.55 ms per call with both cores free, 1.0 ms while another process held one (1.8x).
REFERENCE_DRIFT_BUSY = 1.25
REFERENCE_SIZE = 32_768  # float64 values each thread sorts per call: about 1 ms here


def _machine_jiffies() -> tuple[int, int]:
    """(non-idle jiffies excluding steal, steal jiffies), summed over every core, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal  # guest time is already inside user


def _load() -> float:
    return os.getloadavg()[0]


@dataclass(frozen=True)
class LoadReport:
    """What the rest of the machine did while we timed; ``busy`` when it took a share worth mentioning."""

    seconds: float  # wall time monitored
    cores: int
    own_cpu_share: float  # cores this process used on average (all its threads)
    other_cpu_share: float  # cores other processes used on average (0..cores)
    steal_share: float  # cores the hypervisor gave to other machines while we wanted them
    load_before: float  # 1-minute load average at start and end (includes our own runnable threads)
    load_after: float
    busy: bool
    reason: str


def _describe(other: float, steal: float, own: float, cores: int, before: float, after: float) -> str:
    return (
        f"other processes used {other:.2f} of {cores} cores (steal {steal:.2f}, this process {own:.2f}); "
        f"load average {before:.2f} -> {after:.2f}"
    )


class Monitor:
    """Measures what other processes used the CPU for between ``start()`` and ``stop()`` (or a ``with`` block)."""

    def __init__(self, *, busy_share: float = OTHER_CPU_BUSY):
        self.busy_share = busy_share
        self.report: LoadReport | None = None
        self._start: tuple[float, float, int, int, float] | None = None

    def start(self) -> Self:
        busy, steal = _machine_jiffies()
        self._start = (time.monotonic(), time.process_time(), busy, steal, _load())
        return self

    def stop(self) -> LoadReport:
        if self._start is None:
            raise RuntimeError("Monitor.stop() called before start()")
        busy, steal = _machine_jiffies()
        wall, own = time.monotonic(), time.process_time()
        wall0, own0, busy0, steal0, before = self._start
        tick, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
        seconds = max(wall - wall0, 1e-9)
        own_share = (own - own0) / seconds
        other = max(0.0, (busy - busy0) / tick / seconds - own_share)
        steal_share = (steal - steal0) / tick / seconds
        after = _load()
        is_busy = other + steal_share > self.busy_share
        reason = _describe(other, steal_share, own_share, cores, before, after)
        verdict = f"busy: {reason} (more than {self.busy_share:.2f})" if is_busy else f"quiet: {reason}"
        self.report = LoadReport(seconds, cores, own_share, other, steal_share, before, after, is_busy, verdict)
        return self.report

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class ReferenceWorkload(Runner):
    """A fixed computation (sort seeded floats, ~1 ms) on ``threads`` threads, timed beside the contenders like one.

    Give it the contenders' thread count: a single-threaded probe is scheduled onto whichever core is free and
    hardly slows while another process holds the other core (1.05 -> 1.08 ms measured here), where a 2-thread
    probe, like a 2-thread contender, slows 1.8x (0.55 -> 1.0 ms).
    """

    engine = "reference"
    precision = "float64 (numpy sort)"
    input_names = ()

    def __init__(self, name: str = "reference workload", *, threads: int = 1, size: int = REFERENCE_SIZE):
        self.name, self.threads = name, max(1, threads)
        rng = np.random.default_rng(0)
        self.chunks = [rng.random(size) for _ in range(self.threads)]
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # np.sort returns a sorted copy and releases the GIL: the same work on every call, on every thread
        ordered = list(self._pool.map(np.sort, self.chunks)) if self._pool else [np.sort(self.chunks[0])]
        return {"checksum": np.array([chunk[len(chunk) // 2] for chunk in ordered])}

    def calibrate(self, *, seconds: float = 0.1) -> float:
        """Median seconds per call over ``seconds`` of calls: the quiet figure, when taken on a quiet machine."""
        self.infer({})
        runs: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(runs) < 5:
            start = time.perf_counter()
            self.infer({})
            runs.append(time.perf_counter() - start)
        return float(np.median(runs))

    def close(self) -> None:
        """Stop its worker threads (it cannot run afterwards)."""
        if self._pool:
            self._pool.shutdown()


@dataclass(frozen=True)
class Quietness:
    """Was the stretch of timing quiet? ``reason`` gives the figures that show it either way."""

    quiet: bool
    other_cpu_share: float
    reference_drift: float  # upper-quartile reference block median / its quiet figure (1.0 = as fast as quiet)
    load_before: float
    load_after: float
    reason: str

    def __bool__(self) -> bool:
        return self.quiet


def drift(reference_block_medians: Sequence[float], quiet_s: float | None = None) -> float:
    """The upper quartile of the reference's block medians over its quiet figure (else over its fastest block).

    The upper quartile, not the slowest block: one blip in one block barely moves the contenders' medians of
    block medians, but load over a quarter of the blocks or more does, and shows here.
    """
    blocks = np.asarray(reference_block_medians, dtype=float)
    if blocks.size == 0:
        return 1.0
    base = min(float(blocks.min()), quiet_s) if quiet_s else float(blocks.min())
    return float(np.percentile(blocks, 75) / base)


def verdict(
    report: LoadReport,
    reference_block_medians: Sequence[float],
    *,
    quiet_reference_s: float | None = None,
    max_drift: float = REFERENCE_DRIFT_BUSY,
) -> Quietness:
    """Quiet only when other processes took little CPU and the reference workload kept its quiet speed."""
    slow = drift(reference_block_medians, quiet_reference_s)
    problems = []
    if report.busy:
        taken = report.other_cpu_share + report.steal_share
        problems.append(f"other processes used {taken:.2f} of {report.cores} cores")
    if slow > max_drift:
        problems.append(f"the reference workload ran {slow:.2f}x slower than quiet (limit {max_drift:.2f}x)")
    figures = (
        f"other processes {report.other_cpu_share:.2f} cores, steal {report.steal_share:.2f}, reference drift "
        f"{slow:.2f}x, load average {report.load_before:.2f} -> {report.load_after:.2f}"
    )
    reason = ("busy: " + "; ".join(problems) + f" ({figures})") if problems else f"quiet: {figures}"
    return Quietness(not problems, report.other_cpu_share, slow, report.load_before, report.load_after, reason)


class Hog:
    """A bounded CPU hog: ``processes`` busy loops (default one per core) that end by themselves after ``seconds``.

    Use as a context manager; the processes are killed on exit whatever happened.
    """

    def __init__(self, seconds: float, processes: int | None = None):
        self.seconds, self.count = seconds, processes or os.cpu_count() or 1
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        code = f"import time\nend = time.monotonic() + {self.seconds}\nwhile time.monotonic() < end: pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.count)]
        time.sleep(0.2)  # let them start spinning before anything is measured
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
