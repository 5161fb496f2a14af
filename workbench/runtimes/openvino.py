"""OpenVINO (optional extra: ``pip install -e ".[openvino]"``), CPU plugin.

Its CPU plugin picks bf16 by default on CPUs with avx512_bf16; here the inference precision is a
parameter (default f32, so fp32 thresholds keep their meaning), and the precision that really ran is
read off the compiled model's runtime graph.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from workbench.errors import EngineRefused
from workbench.runtimes import EngineParams, Feeds, Tuner, engine
from workbench.runtimes.base import NotApplicable, Runner

# the runtime layers that hold the arithmetic; their precisions are what "ran"
COMPUTE_LAYERS = ("RNNSeq", "RNNCell", "FullyConnected", "MatMul", "Convolution", "ScaledDotProductAttention", "MHA")


class OpenVinoParams(EngineParams):
    inference_precision: Literal["f32", "bf16", "f16"] = "f32"
    device: Literal["CPU"] = "CPU"


class OpenVinoRunner(Runner):
    engine = "openvino"

    def __init__(self, name: str, compiled: Any, precision: str):
        self.name, self.compiled, self.precision = name, compiled, precision
        self.request = compiled.create_infer_request()
        self.input_names = tuple(port.get_any_name() for port in compiled.inputs)
        self.output_names = [port.get_any_name() for port in compiled.outputs]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = self.request.infer(feeds)
        except Exception as exc:  # OpenVINO's own failure on these inputs
            raise EngineRefused(f"OpenVINO could not run {self.name}") from exc
        return {name: np.asarray(results[port]) for name, port in zip(self.output_names, self.compiled.outputs)}


def runtime_precision(compiled: Any) -> str:
    """``f32: RNNSeq 1, FullyConnected 1``: each compute layer type at the precision it runs in."""
    seen: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        if layer in COMPUTE_LAYERS:
            seen[precision][layer] += 1
    if not seen:
        return "unknown (no compute layers in the runtime graph)"
    parts = [f"{p}: " + ", ".join(f"{layer} {n}" for layer, n in layers.items()) for p, layers in sorted(seen.items())]
    return "; ".join(parts)


def refusal(text: str) -> str:
    """The lines of an OpenVINO error that say why (its own source locations and check banners left out)."""
    noise = ("Exception from", "Check '", "FrontEnd API failed", "Summary:")
    lines = [line.strip(" -") for line in text.splitlines() if line.strip() and not line.startswith(noise)]
    return " ".join(lines)[:400] or text.strip()[:400]


def _compile(path: Path, params: EngineParams, threads: int, options: dict[str, Any]) -> Any:
    assert isinstance(params, OpenVinoParams)
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": params.inference_precision, "INFERENCE_NUM_THREADS": threads, **options}
    try:
        return core.compile_model(core.read_model(str(path)), params.device, config)
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line reasons
        raise NotApplicable(f"OpenVINO refused this model: {refusal(str(exc))}") from None


def load_with(path: Path, params: EngineParams, threads: int, options: dict[str, Any]) -> Runner:
    """A runner compiled with one option set of ``grid`` (its thread count wins over ``threads``)."""
    compiled = _compile(path, params, int(options.get("INFERENCE_NUM_THREADS", threads)), options)
    return OpenVinoRunner(f"openvino:{path.stem}", compiled, runtime_precision(compiled))


def grid(threads: int) -> list[dict[str, Any]]:
    """Performance hints and streams to try: the default configuration (what ``load`` compiles) first."""
    return [{}] + [
        {"PERFORMANCE_HINT": hint, "NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": t}
        for t in dict.fromkeys((threads, 1))
        for hint, streams in (("LATENCY", 1), ("THROUGHPUT", 1))
    ]


def label(options: dict[str, Any]) -> str:
    return ", ".join(f"{k.lower().replace('_', ' ')} {v}" for k, v in options.items()) or "the plugin's defaults"


def profile(path: Path, params: EngineParams, feeds: Feeds, threads: int, runs: int = 20) -> dict[str, float]:
    """Share of node time per runtime layer type, from OpenVINO's performance counters."""
    compiled = _compile(path, params, threads, {"PERF_COUNT": True})
    request = compiled.create_infer_request()
    totals: dict[str, float] = defaultdict(float)
    for _ in range(runs):
        request.infer(feeds)
        for info in request.profiling_info:
            totals[info.node_type] += info.real_time.total_seconds()
    whole = sum(totals.values()) or 1.0
    return {op: t / whole for op, t in sorted(totals.items(), key=lambda kv: -kv[1]) if t > 0}


@engine(
    "openvino",
    params=OpenVinoParams,
    module="openvino",
    install='pip install -e ".[openvino]"',
    tuner=Tuner(grid, load_with, label),
    profiler=profile,
)
def load(path: Path, params: EngineParams, threads: int) -> Runner:
    return load_with(path, params, threads, {})
