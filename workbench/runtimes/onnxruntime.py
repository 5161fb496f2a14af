"""onnxruntime: providers and session options are parameters; its hooks tune session options and profile ops."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import json
import tempfile
from collections import defaultdict

import numpy as np
from pydantic import Field, field_validator

from workbench.errors import EngineRefused
from workbench.runtimes import EngineParams, Feeds, Tuner, engine
from workbench.runtimes.base import NotApplicable, Runner

class OnnxRuntimeParams(EngineParams):
    providers: tuple[str, ...] = Field(("CPUExecutionProvider",), min_length=1, strict=False)

    @field_validator("providers")
    @classmethod
    def _available(cls, providers: tuple[str, ...]) -> tuple[str, ...]:
        """A provider this onnxruntime lacks would fall back to CPU silently: refuse it at recipe load instead."""
        import onnxruntime as ort

        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise ValueError(
                f"{', '.join(missing)}: not available in this onnxruntime; available: "
                + ", ".join(ort.get_available_providers())
            )
        return providers

    graph_optimization_level: Literal[
        "ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"
    ] = "ORT_ENABLE_ALL"
    execution_mode: Literal["ORT_SEQUENTIAL", "ORT_PARALLEL"] = "ORT_SEQUENTIAL"


def session(path: Path, threads: int, options: dict[str, Any] | None = None, providers: tuple[str, ...] = ()) -> Any:
    """An onnxruntime session with explicit threads and options (names as in ``ort.SessionOptions``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # fatal only: its warnings would reach the terminal, and an error it logs is also raised, with the same words,
    # to the caller, which reports it in one line (validate's failed row, measure.first_call)
    opts.log_severity_level = 4
    for name, value in (options or {}).items():
        if name == "graph_optimization_level":
            value = getattr(ort.GraphOptimizationLevel, value)
        elif name == "execution_mode":
            value = getattr(ort.ExecutionMode, value)
        setattr(opts, name, value)
    return ort.InferenceSession(str(path), opts, providers=list(providers or ("CPUExecutionProvider",)))


def file_precision(path: Path) -> str:
    """What onnxruntime will run: the file's int8 ops, or fp32 (it runs the graph as written)."""
    from workbench import ops

    return ops.int8_summary(ops.op_counts(path))


class OnnxRuntimeRunner(Runner):
    engine = "onnxruntime"

    def __init__(self, name: str, sess: Any, precision: str):
        self.name, self.session, self.precision = name, sess, precision
        self.input_names = tuple(value.name for value in sess.get_inputs())
        self.output_names = [value.name for value in sess.get_outputs()]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self.session.run(None, feeds)
        except Exception as exc:  # onnxruntime's own failure on these inputs
            raise EngineRefused(f"onnxruntime could not run {self.name}") from exc
        return dict(zip(self.output_names, outputs))


def load_file(path: Path, threads: int, options: dict[str, Any] | None = None, *, name: str = "") -> OnnxRuntimeRunner:
    """A runner for ``path``; a file onnxruntime cannot load raises NotApplicable with its first line."""
    options = dict(options or {})
    providers = tuple(options.pop("providers", ()) or ())
    try:
        sess = session(path, threads, options, providers)
    except Exception as exc:  # onnxruntime's untyped load errors
        raise NotApplicable(f"onnxruntime cannot load this model: {str(exc).strip().splitlines()[0]}") from None
    used = sess.get_providers()[0]
    precision = file_precision(path) + ("" if used == "CPUExecutionProvider" else f" on {used}")
    return OnnxRuntimeRunner(name or f"onnxruntime:{path.stem}", sess, precision)


def grid(threads: int) -> list[dict[str, Any]]:
    """Session options to try: the default configuration first, then its variations."""
    return [
        {"intra_op_num_threads": t, "graph_optimization_level": level, "execution_mode": mode}
        for t in dict.fromkeys((threads, 1))
        for level in ("ORT_ENABLE_ALL", "ORT_ENABLE_BASIC")
        for mode in ("ORT_SEQUENTIAL", "ORT_PARALLEL")
    ]


def load_with(path: Path, params: EngineParams, threads: int, options: dict[str, Any]) -> Runner:
    """A runner with one option set of ``grid`` (its thread count wins over ``threads``)."""
    assert isinstance(params, OnnxRuntimeParams)
    merged = {**params.model_dump(), **options}
    return load_file(path, merged.pop("intra_op_num_threads", threads), merged)


def label(options: dict[str, Any]) -> str:
    return ", ".join(
        f"{key.replace('_', ' ')} {str(value).replace('ORT_', '').lower()}" for key, value in options.items()
    )


def profile(path: Path, params: EngineParams, feeds: Feeds, threads: int, runs: int = 20) -> dict[str, float]:
    """Share of node time per op type, from onnxruntime's own profiler."""
    with tempfile.TemporaryDirectory() as folder:
        options = {"enable_profiling": True, "profile_file_prefix": str(Path(folder) / "profile")}
        sess = session(path, threads, options)
        for _ in range(runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values()) or 1.0
    return {op: us / whole for op, us in sorted(totals.items(), key=lambda kv: -kv[1])}


@engine(
    "onnxruntime",
    params=OnnxRuntimeParams,
    module="onnxruntime",
    install="pip install onnxruntime",
    tuner=Tuner(grid, load_with, label),
    profiler=profile,
)
def load(path: Path, params: EngineParams, threads: int) -> Runner:
    assert isinstance(params, OnnxRuntimeParams)
    return load_file(path, threads, params.model_dump())
