"""The benchmarks of one ``workbench run``: every stage's artifact beside PyTorch fp32 and PyTorch int8.

Never cached: a speed-up is only worth something when both sides were timed in the same run.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workbench import bench, tune
from workbench.recipe import BenchSpec


def cases(spec: BenchSpec) -> list[bench.Case]:
    latency = [bench.Case(f"b1_l{n}", 1, n) for n in spec.latency_lengths]
    t = spec.throughput
    return latency + [bench.Case(f"b{t.batch}_l{t.length}", t.batch, t.length)]


def run(
    module: Any,
    artifacts: Sequence[tuple[str, Path, str]],
    spec: BenchSpec,
    *,
    threads: int,
    vocab_size: int,
    batch_first: bool,
    on_case: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``artifacts``: (stage, path, precision). Returns plain data for metrics.json and the report."""
    note = on_case or (lambda text: None)
    headline = bench.Case(f"b1_l{max(spec.latency_lengths)}", 1, max(spec.latency_lengths))
    torch_refs = [bench.torch_fp32(module, threads), bench.torch_int8(module, threads)]
    onnx = [bench.onnx_file(stage, path, threads) for stage, path, _ in artifacts]
    common = {"vocab_size": vocab_size, "batch_first": batch_first, "budget_s": spec.budget_seconds}
    timed_cases = cases(spec)
    timings = bench.run_cases(torch_refs + onnx, timed_cases, on_case=lambda c: note(f"timing {c.name}"), **common)

    # the length chart: the first fp32 artifact and the last int8 one, under names that say which they are
    fp32 = next((i for i, a in enumerate(artifacts) if a[2] == "fp32"), None)
    int8 = next((i for i in reversed(range(len(artifacts))) if artifacts[i][2] == "int8"), None)
    chart_set = torch_refs + [
        bench.Contender(f"onnx {artifacts[i][2]} ({artifacts[i][0]})", onnx[i].call)
        for i in (fp32, int8)
        if i is not None
    ]
    by_length = bench.run_cases(
        chart_set,
        [bench.Case(f"b1_l{n}", 1, n) for n in spec.chart_lengths],
        on_case=lambda c: note(f"chart {c.name}"),
        **common,
    )
    result: dict[str, Any] = {
        "threads": threads,
        "budget_seconds": spec.budget_seconds,
        "cases": [c.__dict__ for c in timed_cases],
        "headline_case": headline.name,  # batch 1 at the longest latency length: tuned, profiled, compared
        "timings": [t.to_dict() for t in timings],
        "speedup_vs_pytorch_fp32": _nested(bench.speedups(timings)),
        "speedup_vs_pytorch_int8": _nested(bench.speedups(timings, "pytorch int8")),
        "by_length": [t.to_dict() for t in by_length],
        "tuning": None,
        "profile": None,
    }
    final = artifacts[-1] if artifacts else None
    if final is not None and spec.tune:
        note("tuning session options")
        result["tuning"] = {
            "stage": final[0],
            **tune.tune(
                final[1],
                headline,
                threads=threads,
                vocab_size=vocab_size,
                batch_first=batch_first,
                budget_s=spec.budget_seconds,
            ).to_dict(),
        }
    if final is not None:
        note("profiling")
        ids = bench.inputs(headline, vocab_size=vocab_size, batch_first=batch_first)
        result["profile"] = {
            "stage": final[0],
            "case": headline.name,
            "op_share": profile(final[1], ids, threads),
            "lstm_macs_per_token": lstm_macs_per_token(artifacts[0][1]),
        }
    return result


def _nested(flat: dict[tuple[str, str], float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (contender, case), value in flat.items():
        out[contender][case] = value
    return dict(out)


def profile(path: Path, ids: Any, threads: int, runs: int = 20) -> dict[str, float]:
    """Share of node time per op type, from onnxruntime's own profiler (what the time goes to)."""
    with tempfile.TemporaryDirectory() as folder:
        session = bench.onnx_session(
            path, threads, {"enable_profiling": True, "profile_file_prefix": str(Path(folder) / "profile")}
        )
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: ids})
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values()) or 1.0
    return {op: us / whole for op, us in sorted(totals.items(), key=lambda kv: -kv[1])}


def bench_files(
    paths: Sequence[Path],
    spec: BenchSpec,
    *,
    threads: int,
    vocab_size: int,
    batch_first: bool,
    module: Any = None,
    input_name: str | None = None,
) -> dict[str, Any]:
    """``workbench bench``: the given ONNX files (and the torch references when a module is given).

    With ``input_name`` (from a recipe), each file must have exactly that one int64 input.
    """
    contenders = [bench.torch_fp32(module, threads), bench.torch_int8(module, threads)] if module is not None else []
    names = [path.name for path in paths]
    names = names if len(set(names)) == len(names) else [str(path) for path in paths]
    for name, path in zip(names, paths):
        session = bench.checked_session(path, threads, input_name=input_name)
        input_of = session.get_inputs()[0].name
        contenders.append(bench.Contender(name, lambda ids, s=session, n=input_of: s.run(None, {n: ids})))
    timings = bench.run_cases(
        contenders, cases(spec), vocab_size=vocab_size, batch_first=batch_first, budget_s=spec.budget_seconds
    )
    baseline = contenders[0].name
    return {
        "threads": threads,
        "budget_seconds": spec.budget_seconds,
        "baseline": baseline,
        "cases": [c.__dict__ for c in cases(spec)],
        "timings": [t.to_dict() for t in timings],
        "speedup_vs_pytorch_fp32": _nested(bench.speedups(timings, baseline)),
    }


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
