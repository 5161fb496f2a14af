"""What ONNX op types mean for precision: the one place that knows which op types run int8 arithmetic."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

# ops whose presence means an engine runs int8 arithmetic (dynamic or static quantization, QOperator form)
INT8_OPS = frozenset(
    {
        "DynamicQuantizeLSTM",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "QAttention",
        "ConvInteger",
        "QLinearMatMul",
        "QLinearConv",
        "QLinearAdd",
        "QLinearMul",
        "QGemm",
        "QEmbedLayerNormalization",
    }
)
# QDQ form (static quantization): int8 tensors between QuantizeLinear/DequantizeLinear pairs, which an engine
# fuses into int8 kernels when it loads the file
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def op_counts(path: Path) -> Counter[str]:
    """Op type -> node count of the ONNX file's main graph (its weights are not read)."""
    from workbench.artifact import read_graph

    return Counter(node.op_type for node in read_graph(path).graph.node)


def int8_summary(counts: Counter[str] | dict[str, int]) -> str:
    """``int8: MatMulInteger 2, QAttention 1``; ``int8 QDQ: QuantizeLinear 9, DequantizeLinear 12`` for a file
    whose int8 is in QDQ form only; ``fp32`` when the graph has neither."""
    int8 = {op: n for op, n in sorted(counts.items()) if op in INT8_OPS}
    if int8:
        return "int8: " + ", ".join(f"{op} {n}" for op, n in int8.items())
    qdq = {op: n for op, n in sorted(counts.items(), reverse=True) if op in QDQ_OPS}
    return "int8 QDQ: " + ", ".join(f"{op} {n}" for op, n in qdq.items()) if qdq else "fp32"


def recurrent_macs_per_token(path: Path) -> int | None:
    """Multiply-accumulates one sample's LSTM layers do per token (4 gates x hidden x (input + hidden)); None
    for a graph without an LSTM whose weights are initializers."""
    from workbench.artifact import read_graph

    graph = read_graph(path).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    total = 0
    for node in graph.node:
        if node.op_type == "LSTM" and node.input[1] in shapes and node.input[2] in shapes:
            directions, gates, inputs = shapes[node.input[1]]
            total += directions * gates * (inputs + shapes[node.input[2]][2])
    return total or None
