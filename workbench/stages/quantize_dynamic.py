"""``quantize_dynamic``: onnxruntime dynamic int8 quantization of weights (LSTM, Gemm/MatMul, Gather, BERT's fused ops).

The stage checks its own effect: an op type it was asked to quantize that is still there in fp32
afterwards is a StageError, not a quietly unquantized model. Its facts say what was quantized and
what still carries fp32 weights (e.g. a GRU, for which onnxruntime has no dynamic int8 kernel).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from workbench.errors import StageError
from workbench.ops import INT8_OPS
from workbench.precision import INT8
from workbench.stages import Facts, Params, Source, stage

# What each float op becomes once its weights are int8; Gather keeps its name but reads an int8 table.
QUANTIZED_FORM = {
    "LSTM": "DynamicQuantizeLSTM",
    "Gemm": "MatMulInteger",
    "MatMul": "MatMulInteger",
    "Gather": "Gather of an int8 table",
    "Attention": "QAttention",
    "EmbedLayerNormalization": "QEmbedLayerNormalization",  # BERT's fused embedding tables
}
# Which inputs of an op are its weights (when they are initializers).
WEIGHT_INPUTS = {
    "LSTM": (1, 2),
    "GRU": (1, 2),
    "RNN": (1, 2),
    "Gemm": (0, 1),
    "MatMul": (0, 1),
    "Gather": (0,),
    "Attention": (1,),
    "EmbedLayerNormalization": (2, 3, 4),
}
# onnxruntime rewrites every Gemm as MatMul + Add before it quantizes: asking for either quantizes both.
MATRIX_PRODUCTS = {"Gemm", "MatMul"}
NO_DYNAMIC_KERNEL = ("GRU", "RNN")  # onnxruntime's dynamic quantizer has no int8 form for these


def _quantizable(op: Any) -> Any:
    """Refuse, at recipe load, an op type this stage cannot quantize, saying why and what it can."""
    if isinstance(op, str) and op not in QUANTIZED_FORM:
        can = ", ".join(QUANTIZED_FORM)
        if op in NO_DYNAMIC_KERNEL:
            raise PydanticCustomError(
                "not_quantizable",
                "{op} cannot be quantized dynamically by onnxruntime (it has no dynamic int8 {op} kernel; "
                "leave it out and it stays fp32); op types it can quantize: {can}",
                {"op": op, "can": can},
            )
        raise PydanticCustomError("not_quantizable", "op types this stage can quantize: {can}", {"can": can})
    return op


OpType = Annotated[
    Literal["LSTM", "Gemm", "MatMul", "Gather", "Attention", "EmbedLayerNormalization"], BeforeValidator(_quantizable)
]


class QuantizeParams(Params):
    weight_type: Literal["qint8", "quint8"] = "qint8"
    op_types: tuple[OpType, ...] = Field(
        ("LSTM", "Gemm", "MatMul"),
        min_length=1,
        strict=False,  # strict=False: YAML gives a list
    )
    per_channel: bool = False
    reduce_range: bool = False
    nodes_to_exclude: tuple[str, ...] = Field((), strict=False)  # node names of the input graph: they stay fp32


class StayedFp32(BaseModel):
    """An op type that still reads fp32 weights after quantization."""

    count: int
    weight_bytes: int
    share_of_file: float
    reason: str


class QuantizeFacts(Facts):
    quantized: dict[str, int]  # "<op> -> <its int8 form>" -> node count
    weight_type: str
    stayed_fp32: dict[str, StayedFp32] = {}
    excluded: tuple[str, ...] = ()  # nodes_to_exclude: left fp32 on purpose

    def lines(self) -> list[str]:
        out = ["quantized: " + ", ".join(f"{n} x {op}" for op, n in self.quantized.items())]
        if self.excluded:
            out.append("left fp32 on purpose (nodes_to_exclude): " + ", ".join(self.excluded))
        for op, info in self.stayed_fp32.items():
            out.append(
                f"stayed fp32: {info.count} x {op} ({info.weight_bytes:,} bytes of fp32 weights, "
                f"{100 * info.share_of_file:.1f}% of the file): {info.reason}"
            )
        return out


def _one_node(params: QuantizeParams, source: Source):
    """Quantize chosen nodes the way this stage does (for the per-layer error analysis)."""
    from workbench.decide.sensitivity import DynamicQuantizer

    return DynamicQuantizer(params.weight_type, params.per_channel, params.reduce_range)


@stage("quantize_dynamic", params=QuantizeParams, facts=QuantizeFacts, precision=INT8, requantize=_one_node)
def quantize_dynamic(source: Source, params: QuantizeParams, dst: Path) -> QuantizeFacts:
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    asked = set(params.op_types) | (MATRIX_PRODUCTS if MATRIX_PRODUCTS & set(params.op_types) else set())
    before = onnx.load(str(source.onnx))
    excluded = _excluded(before, params.nodes_to_exclude)
    ort_quantize_dynamic(
        str(source.onnx),
        str(dst),
        weight_type=QuantType.QInt8 if params.weight_type == "qint8" else QuantType.QUInt8,
        op_types_to_quantize=sorted(asked),
        per_channel=params.per_channel,
        reduce_range=params.reduce_range,
        nodes_to_exclude=sorted(excluded),
        # Without it, a graph with fused com.microsoft ops (ort_optimize's Attention, SkipLayerNormalization)
        # fails: "Unable to find data type for weight_name=... shape_inference failed".
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    after = onnx.load(str(dst))
    left = _still_float(after, asked, excluded)
    if left:
        raise StageError("quantize_dynamic left ops in fp32: " + "; ".join(left))
    floats = _float_initializers(before)
    with_weights = Counter(
        n.op_type for n in before.graph.node if n.op_type in asked and n.name not in excluded and _float_weights(n, floats)
    )
    if not with_weights:
        present = sorted({n.op_type for n in before.graph.node if _float_weights(n, floats)})
        raise StageError(
            f"quantize_dynamic quantized nothing: no op of the types asked for ({', '.join(sorted(asked))}) reads "
            f"fp32 weights in this graph; ops with fp32 weights here: {', '.join(present) or 'none'}"
        )
    return QuantizeFacts(
        quantized={f"{op} -> {form}": with_weights[op] for op, form in QUANTIZED_FORM.items() if with_weights[op]},
        weight_type=params.weight_type,
        stayed_fp32=_stayed_fp32(after, dst.stat().st_size, asked),
        excluded=params.nodes_to_exclude,
    )


def _excluded(model: Any, names: tuple[str, ...]) -> set[str]:
    """The names to keep fp32, with the ``<gemm>_MatMul`` that onnxruntime makes of an excluded Gemm; a name that
    names no node of the graph is a StageError (a typo would exclude nothing)."""
    present = {node.name for node in model.graph.node}
    if unknown := [name for name in names if name not in present]:
        some = ", ".join(sorted(n.name for n in model.graph.node if n.op_type in WEIGHT_INPUTS)[:8])
        raise StageError(
            f"quantize_dynamic: nodes_to_exclude names no node of the graph: {', '.join(unknown)} "
            f"(nodes with weights here: {some or 'none'})"
        )
    return set(names) | {f"{name}_MatMul" for name in names}


def _float_initializers(model: Any) -> dict[str, Any]:
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)
    return {init.name: init for init in model.graph.initializer if init.data_type in floats}


def _float_weights(node: Any, floats: dict[str, Any]) -> list[str]:
    """The inputs of ``node`` in its weight positions that are float initializers."""
    positions = WEIGHT_INPUTS.get(node.op_type, ())
    return [name for i, name in enumerate(node.input) if i in positions and name in floats]


def _still_float(after: Any, op_types: set[str], excluded: Collection[str] = ()) -> list[str]:
    """Why each asked-for op is still fp32 after quantization (empty when every weight but the excluded was)."""
    initializers = {init.name for init in after.graph.initializer}
    floats = _float_initializers(after)
    reasons = []
    for node in after.graph.node:
        if node.op_type not in op_types or node.name in excluded:
            continue
        weights = [node.input[i] for i in WEIGHT_INPUTS[node.op_type] if i < len(node.input) and node.input[i]]
        if node.op_type == "LSTM" and not all(name in initializers for name in weights):
            reasons.append(
                f"LSTM '{node.name}': its weights {weights} are not initializers but computed by other nodes "
                "(e.g. Slice/Concat from the dynamo exporter); run the simplify stage first so they are folded"
            )
        elif _float_weights(node, floats):
            reasons.append(f"{node.op_type} '{node.name}' still reads fp32 weights {_float_weights(node, floats)}")
    return reasons


def _stayed_fp32(model: Any, file_bytes: int, asked: set[str]) -> dict[str, StayedFp32]:
    """Op types that still read fp32 weights (float initializers of 2 or more dims: matrices and tables, not
    biases or scales), each with its node count, those weights' bytes and their share of the file."""
    import numpy as np
    from onnx.helper import tensor_dtype_to_np_dtype

    floats = _float_initializers(model)
    counted: set[str] = set()
    stayed: dict[str, dict[str, Any]] = {}
    for node in model.graph.node:
        if node.op_type in INT8_OPS:
            continue
        weights = [name for name in node.input if name in floats and len(floats[name].dims) >= 2]
        if not weights:
            continue
        fresh = [name for name in weights if name not in counted]  # a shared table counts once, for its first reader
        counted.update(fresh)
        size = sum(int(np.prod(floats[n].dims)) * tensor_dtype_to_np_dtype(floats[n].data_type).itemsize for n in fresh)
        entry = stayed.setdefault(node.op_type, {"count": 0, "weight_bytes": 0})
        entry["count"] += 1
        entry["weight_bytes"] += size
    return {
        op: StayedFp32(
            count=entry["count"],
            weight_bytes=entry["weight_bytes"],
            share_of_file=round(entry["weight_bytes"] / file_bytes, 4),
            reason="onnxruntime has no dynamic int8 kernel for it"
            if op in NO_DYNAMIC_KERNEL
            else "not in op_types"
            if op in WEIGHT_INPUTS and op not in asked
            else "this stage does not quantize it",
        )
        for op, entry in stayed.items()
    }
