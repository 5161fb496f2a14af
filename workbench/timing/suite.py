"""The benchmarks of one ``workbench run``: every artifact on every engine beside PyTorch fp32 and int8.

Every contender is a runner from the run's pool (the same objects validation used). All of them are
timed together in one stretch, so every ratio compares figures taken side by side; the whole suite is
cached as one entry (see ``timing.cache``) and measured again only when something it depends on changes.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench import data
from workbench.recipe import BenchSpec
from workbench.runtimes import REFERENCE, TORCH_INT8, Runner
from workbench.runtimes import onnxruntime as ort_engine
from workbench.timing import measure, tune
from workbench.timing.measure import Case, Timing


@dataclass(frozen=True)
class Contender:
    """One timed row: its runner, and what the report says about it."""

    runner: Runner
    stage: str | None  # None for the PyTorch references
    precision: str  # fp32 / int8: the stage's declared precision (PyTorch int8 counts as int8)
    path: Path | None = None
    same_as: str | None = None  # the row of an earlier stage with the same graph on the same engine: not timed again


@dataclass(frozen=True)
class Profile:
    row: str
    case: str
    op_share: dict[str, float]
    lstm_macs_per_token: int | None


@dataclass(frozen=True)
class BenchResult:
    threads: int
    budget_seconds: float
    cases: tuple[Case, ...]
    headline: str  # batch 1 at the longest latency length: tuned, profiled, compared across runs
    timings: tuple[Timing, ...]
    by_length: tuple[Timing, ...]
    precisions: dict[str, str]  # row -> what really ran
    tuning: tune.Tuning | None
    profile: Profile | None
    measured_at: str
    seconds: float  # what measuring took when it was measured
    cached: bool = False
    chart_rows: dict[str, str] = field(default_factory=dict)  # row -> label in the length chart
    aliases: dict[str, str] = field(default_factory=dict)  # row -> the row whose timings it shares (same graph)

    def speedups(self, baseline: str = REFERENCE) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for (row, case), value in measure.speedups(self.timings, baseline).items():
            out[row][case] = value
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "budget_seconds": self.budget_seconds,
            "cases": [asdict(c) for c in self.cases],
            "headline_case": self.headline,
            "timings": [t.to_dict() for t in self.timings],
            "speedup_vs_pytorch_fp32": self.speedups(REFERENCE),
            "speedup_vs_pytorch_int8": self.speedups(TORCH_INT8),
            "by_length": [t.to_dict() for t in self.by_length],
            "chart_rows": self.chart_rows,
            "aliases": self.aliases,
            "precisions": self.precisions,
            "tuning": self.tuning.to_dict() if self.tuning else None,
            "profile": asdict(self.profile) if self.profile else None,
            "measured_at": self.measured_at,
            "measure_seconds": self.seconds,
            "cached": self.cached,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, cached: bool) -> BenchResult:
        timing = lambda t: Timing(**{k: v for k, v in t.items() if k != "samples_per_s"})  # noqa: E731
        return cls(
            d["threads"],
            d["budget_seconds"],
            tuple(Case(**c) for c in d["cases"]),
            d["headline_case"],
            tuple(timing(t) for t in d["timings"]),
            tuple(timing(t) for t in d["by_length"]),
            d["precisions"],
            tune.Tuning.from_dict(d["tuning"]) if d["tuning"] else None,
            Profile(**d["profile"]) if d["profile"] else None,
            d["measured_at"],
            d["measure_seconds"],
            cached,
            d["chart_rows"],
            d["aliases"],
        )


def cases(spec: BenchSpec) -> list[Case]:
    latency = [Case(f"b1_l{n}", 1, n) for n in spec.latency_lengths]
    t = spec.throughput
    return latency + [Case(f"b{t.batch}_l{t.length}", t.batch, t.length)]


Note = Callable[[str], None]


def run(
    contenders: Sequence[Contender],
    spec: BenchSpec,
    model_inputs: Sequence[data.InputLike],
    *,
    threads: int,
    vocab_size: int,
    note: Note | None = None,
) -> BenchResult:
    """Time every contender on every case; the length chart, tuning and profile for the final artifact."""
    say = note or (lambda text: None)
    started = time.perf_counter()
    timed_cases = cases(spec)
    headline = Case(f"b1_l{max(spec.latency_lengths)}", 1, max(spec.latency_lengths))
    timed = [c for c in contenders if c.same_as is None]
    common = {"vocab_size": vocab_size, "budget_s": spec.budget_seconds}
    timings = measure.run_cases(
        [c.runner for c in timed],
        timed_cases,
        model_inputs,
        on_block=lambda c, name: say(f"{c.name}: {name}"),
        **common,
    )
    for alias in (c for c in contenders if c.same_as is not None):
        timings += [replace(t, contender=alias.runner.name) for t in timings if t.contender == alias.same_as]
    # the length chart: the references, the first fp32 artifact and the last int8 one (first engine's rows);
    # lengths the latency cases already timed are not timed again
    artifacts = [c for c in timed if c.stage is not None]
    first_engine = [c for c in artifacts if c.runner.engine == artifacts[0].runner.engine] if artifacts else []
    fp32 = next((c for c in first_engine if c.precision == "fp32"), None)
    int8 = next((c for c in reversed(first_engine) if c.precision == "int8"), None)
    chart = [c for c in contenders if c.stage is None] + [c for c in (fp32, int8) if c is not None]
    chart_rows = {
        c.runner.name: c.runner.name if c.stage is None else f"{c.runner.name} ({c.precision})" for c in chart
    }
    by_length = measure.run_cases(
        [c.runner for c in chart],
        [Case(f"b1_l{n}", 1, n) for n in spec.chart_lengths if n not in spec.latency_lengths],
        model_inputs,
        on_block=lambda c, name: say(f"chart {c.name}: {name}"),
        **common,
    )
    by_length += [t for t in timings if t.batch == 1 and t.length in spec.chart_lengths and t.contender in chart_rows]
    final = next((c for c in reversed(artifacts) if c.runner.engine == tune.ENGINE), None)  # tuned, profiled
    tuning = profile = None
    if final is not None and final.path is not None and final.stage is not None:
        if spec.tune:
            say(f"tuning session options of {final.runner.name}")
            tuning = tune.tune(
                final.path,
                final.stage,
                headline,
                model_inputs,
                threads=threads,
                budget_s=spec.budget_seconds,
                vocab_size=vocab_size,
            )
        say(f"profiling {final.runner.name}")
        feeds = measure.inputs(headline, model_inputs, vocab_size=vocab_size)
        first = next((c.path for c in artifacts if c.path is not None), final.path)
        profile = Profile(
            final.runner.name, headline.name, op_share(final.path, feeds, threads), lstm_macs_per_token(first)
        )
    return BenchResult(
        threads,
        spec.budget_seconds,
        tuple(timed_cases),
        headline.name,
        tuple(timings),
        tuple(by_length),
        {c.runner.name: c.runner.precision for c in contenders},
        tuning,
        profile,
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
        time.perf_counter() - started,
        chart_rows=chart_rows,
        aliases={c.runner.name: c.same_as for c in contenders if c.same_as is not None},
    )


def op_share(path: Path, feeds: dict[str, Any], threads: int, runs: int = 20) -> dict[str, float]:
    """Share of node time per op type, from onnxruntime's own profiler (what the time goes to)."""
    with tempfile.TemporaryDirectory() as folder:
        options = {"enable_profiling": True, "profile_file_prefix": str(Path(folder) / "profile")}
        session = ort_engine.session(path, threads, options)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values()) or 1.0
    return {op: us / whole for op, us in sorted(totals.items(), key=lambda kv: -kv[1])}


def lstm_macs_per_token(path: Path) -> int | None:
    """Multiply-accumulates one sample's LSTM layers do per token (4 gates x hidden x (input + hidden))."""
    import onnx

    graph = onnx.load(str(path)).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    total = 0
    for node in graph.node:
        if node.op_type == "LSTM" and node.input[1] in shapes and node.input[2] in shapes:
            directions, gates, inputs = shapes[node.input[1]]
            total += directions * gates * (inputs + shapes[node.input[2]][2])
    return total or None
