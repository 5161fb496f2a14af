"""``quantize_static``: onnxruntime static int8 (QDQ by default), activation ranges calibrated on held-apart data.

Dynamic int8 picks each activation's scale from the batch it runs, so a sample's output moves with the rest of
its batch; here every scale is fixed at calibration, on batches drawn from data disjoint from the evaluation
set. The stage checks its own effect (a run that quantized nothing is a StageError) and its facts say what
was quantized and what still carries fp32 weights and why (LSTM and GRU: onnxruntime has no static kernel).
Everything the quantizer logs or prints goes to the facts' warnings, never to the terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from workbench.errors import StageError
from workbench.ops import INT8_OPS, QDQ_OPS
from workbench.precision import INT8
from workbench.stages import Facts, Feeds, Params, Source, stage
from workbench.stages.quantize_dynamic import StayedFp32

# Op types onnxruntime's static quantizer knows (its QDQ and QOperator registries; a test keeps this honest).
STATIC_OP_TYPES = (
    "MatMul", "Gemm", "Conv", "ConvTranspose", "Gather", "GatherElements", "Add", "Mul", "Relu", "Clip",
    "LeakyRelu", "Sigmoid", "Softmax", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat",
    "Split", "Slice", "Pad", "Where", "Resize", "MaxPool", "AveragePool", "GlobalAveragePool",
    "LayerNormalization", "InstanceNormalization", "BatchNormalization", "ArgMax", "TopK", "CumSum",
)  # fmt: skip
NO_STATIC_KERNEL = ("LSTM", "GRU", "RNN")
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def _quantizable(op: Any) -> Any:
    """Refuse, at recipe load, an op type onnxruntime cannot quantize statically, saying why and what it can."""
    if isinstance(op, str) and op not in STATIC_OP_TYPES:
        if op in NO_STATIC_KERNEL:
            raise PydanticCustomError(
                "not_quantizable",
                "{op} cannot be quantized statically by onnxruntime (it has no static int8 {op} kernel; leave it "
                "out and it stays fp32, or use quantize_dynamic, which quantizes LSTM)",
                {"op": op},
            )
        can = ", ".join(STATIC_OP_TYPES)
        raise PydanticCustomError("not_quantizable", "op types this stage can quantize: {can}", {"can": can})
    return op


OpType = Annotated[Literal[STATIC_OP_TYPES], BeforeValidator(_quantizable)]  # type: ignore[valid-type]


class QuantizeStaticParams(Params):
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    calibrate_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_samples: int = Field(128, ge=1, le=100_000)
    per_channel: bool = False
    reduce_range: bool = False
    # onnxruntime's advice for x86 CPUs: uint8 activations, int8 weights (reduce_range only without VNNI)
    activation_type: Literal["quint8", "qint8"] = "quint8"
    weight_type: Literal["qint8", "quint8"] = "qint8"
    op_types: tuple[OpType, ...] = Field(("MatMul", "Gemm", "Gather"), min_length=1, strict=False)  # YAML: a list
    nodes_to_exclude: tuple[str, ...] = Field((), strict=False)
    preprocess: bool = True  # onnxruntime's quant_pre_process (shape inference, basic optimizations) first

    @model_validator(mode="after")
    def _types_pair(self) -> QuantizeStaticParams:
        if self.activation_type == "qint8" and self.weight_type == "quint8":
            raise ValueError("onnxruntime does not support int8 activations with uint8 weights; use weight_type qint8")
        return self


class QuantizeStaticFacts(Facts):
    quant_format: str
    calibrate_method: str
    calibration_samples: int  # samples the ranges were calibrated on (from data disjoint from the evaluation set)
    calibration_batches: int
    activation_type: str
    weight_type: str
    per_channel: bool
    preprocessed: bool  # quant_pre_process ran (False: it was off, or it failed and warnings say why)
    quantized: dict[str, int]  # op type -> nodes that now read int8 (through DequantizeLinear, or as QLinear ops)
    stayed_fp32: dict[str, StayedFp32] = Field(default_factory=dict)

    def lines(self) -> list[str]:
        how = (
            f"{self.quant_format}, {self.calibrate_method} ranges from {self.calibration_samples} samples "
            f"in {self.calibration_batches} batches, activations {self.activation_type}, weights {self.weight_type}"
            f"{' per channel' if self.per_channel else ''}"
        )
        out = [f"quantized ({how}): " + ", ".join(f"{n} x {op}" for op, n in self.quantized.items())]
        for op, info in self.stayed_fp32.items():
            out.append(
                f"stayed fp32: {info.count} x {op} ({info.weight_bytes:,} bytes of fp32 weights, "
                f"{100 * info.share_of_file:.1f}% of the file): {info.reason}"
            )
        return out


class _Reader:
    """onnxruntime's calibration reader over whole batches; ``set_range`` lets it calibrate one batch per pass.

    (Entropy and Percentile stack a tensor's values over every batch of one pass, which fails when batches
    differ in length; one batch per pass merges their histograms instead.)
    """

    def __init__(self, batches: list[Feeds]):
        self.batches = batches
        self.set_range(0, len(batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._left = iter(self.batches[start_index:end_index])

    def get_next(self) -> Feeds | None:
        return next(self._left, None)


class _Lines(logging.Handler):
    """Collects the whole log lines of the quantizer (it logs through the root logger)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _said(into: list[str]) -> Iterator[None]:
    """Route what the block logs, prints or warns into ``into`` (whole lines, once each), away from the terminal."""
    root, handler, printed = logging.getLogger(), _Lines(), io.StringIO()
    kept = root.handlers[:]
    root.handlers = [handler]
    try:
        # stdout only: the quantizer prints there; stderr is where the run's progress bar draws itself
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(printed):
            warnings.simplefilter("always")
            yield
    finally:
        root.handlers = kept
        said = handler.lines + printed.getvalue().splitlines() + [str(w.message) for w in caught]
        into.extend(dict.fromkeys(line.strip() for line in said if line.strip() and line.strip() not in into))


def _one_node(params: QuantizeStaticParams, source: Source):
    """Quantize chosen nodes the way this stage does (for the per-layer error analysis), calibrated alike."""
    from workbench.decide.sensitivity import StaticQuantizer

    if source.calibration is None:
        raise StageError("quantize_static needs calibration data")
    methods: dict[str, Literal["MinMax", "Entropy", "Percentile"]] = {
        "minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"
    }
    return StaticQuantizer(
        tuple(source.calibration(params.calibration_samples)),
        method=methods[params.calibrate_method],
        per_channel=params.per_channel,
        reduce_range=params.reduce_range,
        quant_format="QDQ" if params.quant_format == "qdq" else "QOperator",
    )


@stage(
    "quantize_static",
    params=QuantizeStaticParams,
    facts=QuantizeStaticFacts,
    precision=INT8,
    calibrates=True,
    requantize=_one_node,
)
def quantize_static(source: Source, params: QuantizeStaticParams, dst: Path) -> QuantizeStaticFacts:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    batches = _calibration(source, params.calibration_samples)
    said: list[str] = []
    with tempfile.TemporaryDirectory(prefix="quantize_static.") as scratch:
        src = _preprocessed(source.onnx, Path(scratch) / "pre.onnx", said) if params.preprocess else source.onnx
        before = onnx.load(str(src))
        _check_excluded(before, params.nodes_to_exclude)
        with _said(said):
            ort_quantize_static(
                str(src),
                str(dst),
                _Reader(batches),
                quant_format=QuantFormat.QDQ if params.quant_format == "qdq" else QuantFormat.QOperator,
                op_types_to_quantize=list(params.op_types),
                per_channel=params.per_channel,
                reduce_range=params.reduce_range,
                activation_type=QuantType.QInt8 if params.activation_type == "qint8" else QuantType.QUInt8,
                weight_type=QuantType.QInt8 if params.weight_type == "qint8" else QuantType.QUInt8,
                nodes_to_exclude=list(params.nodes_to_exclude),
                calibrate_method=getattr(CalibrationMethod, METHODS[params.calibrate_method]),
                # one batch per calibration pass (see _Reader); fused com.microsoft ops need the default type
                extra_options={"CalibStridedMinMax": 1, "DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    after = onnx.load(str(dst))
    quantized = _quantized(before, after, set(params.op_types))
    if not quantized:
        raise StageError(
            f"quantize_static quantized nothing: no node of the op types asked for ({', '.join(params.op_types)}) "
            f"reads int8 afterwards; op types in this graph: {', '.join(sorted(_op_types(before))) or 'none'}"
        )
    return QuantizeStaticFacts(
        quant_format=params.quant_format,
        calibrate_method=params.calibrate_method,
        calibration_samples=sum(_samples(batch, before) for batch in batches),
        calibration_batches=len(batches),
        activation_type=params.activation_type,
        weight_type=params.weight_type,
        per_channel=params.per_channel,
        preprocessed=params.preprocess and src != source.onnx,
        quantized=quantized,
        stayed_fp32=_stayed_fp32(after, dst.stat().st_size, params),
        warnings=tuple(said),
    )


def _calibration(source: Source, samples: int) -> list[Feeds]:
    """The calibration batches, or a StageError saying the stage needs data."""
    if source.calibration is None:
        raise StageError(
            "quantize_static needs calibration data (feed batches drawn apart from the evaluation set) and this "
            "run gave it none; use quantize_dynamic, which needs no data"
        )
    batches = [dict(batch) for batch in source.calibration(samples)]
    if not batches:
        raise StageError(f"quantize_static got no calibration batches (asked for {samples} samples)")
    return batches


def _samples(batch: Feeds, model: Any) -> int:
    """The samples in one feed batch: the length of the first input's axis the graph calls batch (else axis 0)."""
    first = model.graph.input[0]
    dims = [d.dim_param for d in first.type.tensor_type.shape.dim]
    axis = next((i for i, name in enumerate(dims) if "batch" in name.lower()), 0)
    return int(batch[first.name].shape[axis])


def _preprocessed(src: Path | None, dst: Path, said: list[str]) -> Path:
    """onnxruntime's quant_pre_process of ``src`` into ``dst``; ``src`` itself (and a warning) if it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    assert src is not None, "quantize_static takes an ONNX file"
    try:
        with _said(said):
            # its symbolic shape inference fails on the TorchScript exporter's graphs (ENVIRONMENT.md)
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    except Exception as exc:  # noqa: BLE001  (any failure: quantize the graph as it came, and say so)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        said.append(f"quant_pre_process failed ({type(exc).__name__}: {first}); quantized the graph as it came")
        return src
    return dst


def _check_excluded(model: Any, excluded: tuple[str, ...]) -> None:
    """A name in nodes_to_exclude that names no node of the graph is a StageError (a typo would exclude nothing)."""
    names = {node.name for node in model.graph.node}
    unknown = [name for name in excluded if name not in names]
    if unknown:
        some = ", ".join(sorted(n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Gather"))[:8])
        raise StageError(
            f"quantize_static: nodes_to_exclude names no node of the graph: {', '.join(unknown)} "
            f"(e.g. its MatMul, Gemm and Gather nodes: {some or 'none'})"
        )


def _op_types(model: Any) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def _reads_int8(model: Any) -> set[str]:
    """Names of the nodes that compute on int8: QLinear ops, and nodes reading an int8 tensor or a dequantized one."""
    from onnx import TensorProto

    int8 = {i.name for i in model.graph.initializer if i.data_type in (TensorProto.INT8, TensorProto.UINT8)}
    int8 |= {
        out for n in model.graph.node if n.op_type in QDQ_OPS | INT8_OPS or _qlinear(n.op_type) for out in n.output
    }
    return {n.name for n in model.graph.node if _qlinear(n.op_type) or n.op_type in INT8_OPS or set(n.input) & int8}


def _qlinear(op_type: str) -> bool:
    return op_type.startswith("QLinear") or op_type == "QGemm"


def _quantized(before: Any, after: Any, asked: set[str]) -> dict[str, int]:
    """Asked-for op type -> its nodes that no longer compute in fp32 (turned into QLinear ops, or reading int8)."""
    int8 = _reads_int8(after)
    still_float = Counter(n.op_type for n in after.graph.node if n.op_type in asked and n.name not in int8)
    counts = {op: n - still_float[op] for op, n in sorted(_op_types(before).items()) if op in asked}
    return {op: n for op, n in counts.items() if n > 0}


def _stayed_fp32(model: Any, file_bytes: int, params: QuantizeStaticParams) -> dict[str, StayedFp32]:
    """Op types whose nodes still read fp32 weights (float initializers of 2 or more dims), with why."""
    import numpy as np
    from onnx import TensorProto
    from onnx.helper import tensor_dtype_to_np_dtype

    floats = {i.name: i for i in model.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)}
    int8, counted = _reads_int8(model), set()
    stayed: dict[str, dict[str, Any]] = {}
    for node in model.graph.node:
        fresh = [n for n in node.input if n in floats and len(floats[n].dims) >= 2 and n not in counted]
        if node.name in int8 or node.op_type in QDQ_OPS or not fresh:
            continue
        counted.update(fresh)  # a shared table counts once, for its first reader
        entry = stayed.setdefault(node.op_type, {"count": 0, "weight_bytes": 0, "reasons": {}})
        entry["count"] += 1
        entry["weight_bytes"] += sum(
            int(np.prod(floats[n].dims)) * tensor_dtype_to_np_dtype(floats[n].data_type).itemsize for n in fresh
        )
        entry["reasons"][_why_fp32(node, params)] = None
    return {
        op: StayedFp32(
            count=e["count"],
            weight_bytes=e["weight_bytes"],
            share_of_file=round(e["weight_bytes"] / file_bytes, 4),
            reason="; ".join(e["reasons"]),
        )
        for op, e in stayed.items()
    }


def _why_fp32(node: Any, params: QuantizeStaticParams) -> str:
    if node.op_type in NO_STATIC_KERNEL:
        return "onnxruntime has no static int8 kernel for it (quantize_dynamic has one for LSTM)"
    if node.name in params.nodes_to_exclude:
        return "in nodes_to_exclude"
    if node.op_type not in params.op_types:
        return "not in op_types"
    return "onnxruntime's static quantizer left it fp32"
