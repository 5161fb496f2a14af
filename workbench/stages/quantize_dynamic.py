"""``quantize_dynamic``: onnxruntime dynamic int8 quantization of weights (LSTM, Gemm/MatMul, optionally Gather).

The stage checks its own effect: an op type it was asked to quantize that is still there in fp32
afterwards is a StageError, not a quietly unquantized model.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from workbench.errors import StageError
from workbench.stages import Facts, Params, Source, stage

# What each float op becomes once its weights are int8; Gather keeps its name but reads an int8 table.
QUANTIZED_FORM = {
    "LSTM": "DynamicQuantizeLSTM",
    "Gemm": "MatMulInteger",
    "MatMul": "MatMulInteger",
    "Gather": "Gather of an int8 table",
    "Attention": "QAttention",
}


class QuantizeParams(Params):
    weight_type: Literal["qint8", "quint8"] = "qint8"
    op_types: tuple[Literal["LSTM", "Gemm", "MatMul", "Gather", "Attention"], ...] = Field(
        ("LSTM", "Gemm", "MatMul"),
        min_length=1,
        strict=False,  # strict=False: YAML gives a list
    )
    per_channel: bool = False
    reduce_range: bool = False


@stage("quantize_dynamic", params=QuantizeParams, precision="int8")
def quantize_dynamic(source: Source, params: QuantizeParams, dst: Path) -> Facts:
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    before = onnx.load(str(source.onnx))
    ort_quantize_dynamic(
        str(source.onnx),
        str(dst),
        weight_type=QuantType.QInt8 if params.weight_type == "qint8" else QuantType.QUInt8,
        op_types_to_quantize=list(params.op_types),
        per_channel=params.per_channel,
        reduce_range=params.reduce_range,
    )
    after = onnx.load(str(dst))
    left = _still_float(after, params.op_types)
    if left:
        raise StageError("quantize_dynamic left ops in fp32: " + "; ".join(left))
    counts_before = Counter(n.op_type for n in before.graph.node)
    quantized = {op: counts_before[op] for op in params.op_types if counts_before[op]}
    return {
        "quantized": {f"{op} -> {QUANTIZED_FORM[op]}": n for op, n in quantized.items()},
        "weight_type": params.weight_type,
    }


def _still_float(after, op_types) -> list[str]:
    """Why each asked-for op is still fp32 after quantization (empty when every weight was quantized)."""
    from onnx import TensorProto

    initializers = {init.name: init for init in after.graph.initializer}
    reasons = []
    for node in after.graph.node:
        if node.op_type not in op_types:
            continue
        weights = list(
            node.input[1:3]
            if node.op_type == "LSTM"
            else node.input[0:1]
            if node.op_type == "Gather"
            else node.input[1:2]
        )
        if node.op_type == "LSTM" and not all(name in initializers for name in weights):
            reasons.append(
                f"LSTM '{node.name}': its weights {weights} are not initializers but computed by other nodes "
                "(e.g. Slice/Concat from the dynamo exporter); run the simplify stage first so they are folded"
            )
        elif any(name in initializers and initializers[name].data_type == TensorProto.FLOAT for name in weights):
            reasons.append(f"{node.op_type} '{node.name}' still reads fp32 weights {weights}")
    return reasons
