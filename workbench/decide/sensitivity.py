"""Per-layer error of an int8 artifact: each node it quantized, quantized alone, against the fp32 graph's logits.

Dynamic int8 (MatMulInteger, DynamicQuantizeLSTM, QAttention, ...) as well as static QDQ, which is all that
onnxruntime's ``qdq_loss_debug`` covers: the fp32 graph is re-quantized one node at a time by a ``Quantize``
callable (``DynamicQuantizer()``, ``StaticQuantizer(...)`` or the caller's), each copy runs on the same feeds,
and its logits are compared with the fp32 graph's. Quantized nodes are matched to fp32 nodes by name, which
onnxruntime's quantizers keep (``<name>_quant``, ``<gemm>_MatMul_quant``, or the same name between Q/DQ).
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from workbench.errors import InputError, StageError
from workbench.ops import INT8_OPS

Feeds = Mapping[str, np.ndarray]
Quantize = Callable[[Path, Path, list[str]], None]  # (fp32 file, destination, names of the nodes to quantize)
Run = Callable[[Path], Callable[[Feeds], np.ndarray]]  # file -> (feeds -> the logits)

# the op types onnxruntime's quantizers turn int8 (nodes_to_quantize picks among them), each with the inputs
# that a static QDQ graph dequantizes when the node itself is quantized (its activations and weights)
QDQ_INPUTS = {
    "Attention": (0, 1),
    "Conv": (0, 1),
    "EmbedLayerNormalization": (2, 3, 4),
    "Gather": (0,),
    "Gemm": (0, 1),
    "LSTM": (1, 2),
    "MatMul": (0, 1),
}
QUANTIZABLE = tuple(QDQ_INPUTS)


class LogitErrors(BaseModel):
    """How far a graph's logits are from the fp32 graph's on the same feeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_abs_error: float
    relative_error: float  # ||q - f|| / ||f|| over every logit
    sqnr_db: float | None  # 10 log10(||f||^2 / ||q - f||^2); None when the logits are identical
    top1_agreement: float  # share of rows whose argmax is the fp32 graph's


class LayerError(LogitErrors):
    """One quantized node, quantized alone: where it is and the error it brings to the logits."""

    node: str
    op_type: str  # in the fp32 graph
    quantized_as: str  # what it became, e.g. MatMulInteger, DynamicQuantizeLSTM, "MatMul (QDQ)"
    module: str | None  # the torch module it came from, where the export kept it


class Sensitivity(BaseModel):
    """Every quantized node ranked by the error it brings alone, worst (lowest SQNR) first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: tuple[LayerError, ...]
    whole: LogitErrors | None  # the int8 artifact itself, every node quantized, when it was given
    samples: int
    batches: int
    method: str


@dataclass(frozen=True)
class DynamicQuantizer:
    """Quantize nodes with onnxruntime's ``quantize_dynamic``, with the settings the int8 artifact used."""

    weight_type: Literal["qint8", "quint8"] = "qint8"
    per_channel: bool = False
    reduce_range: bool = False

    @property
    def description(self) -> str:
        return (
            f"onnxruntime quantize_dynamic ({self.weight_type}, per_channel={self.per_channel}, "
            f"reduce_range={self.reduce_range})"
        )

    def __call__(self, src: Path, dst: Path, nodes: list[str]) -> None:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8 if self.weight_type == "qint8" else QuantType.QUInt8,
            op_types_to_quantize=list(QUANTIZABLE),
            nodes_to_quantize=[*nodes, *(f"{n}_MatMul" for n in nodes)],  # a Gemm is quantized as <name>_MatMul
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # fused com.microsoft ops need it
        )


@dataclass(frozen=True)
class StaticQuantizer:
    """Quantize nodes with onnxruntime's ``quantize_static``, calibrated on ``calibration`` feeds (one per pass)."""

    calibration: tuple[Feeds, ...]
    method: Literal["MinMax", "Entropy", "Percentile"] = "MinMax"
    per_channel: bool = False
    reduce_range: bool = False
    quant_format: Literal["QDQ", "QOperator"] = "QDQ"

    @property
    def description(self) -> str:
        return (
            f"onnxruntime quantize_static ({self.quant_format}, {self.method}, per_channel={self.per_channel}, "
            f"reduce_range={self.reduce_range}, {len(self.calibration)} calibration batches)"
        )

    def __call__(self, src: Path, dst: Path, nodes: list[str]) -> None:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        with contextlib.redirect_stdout(io.StringIO()):  # Entropy and Percentile print their progress
            quantize_static(
                str(src),
                str(dst),
                _Reader(self.calibration),
                quant_format=getattr(QuantFormat, self.quant_format),
                op_types_to_quantize=list(QUANTIZABLE),
                nodes_to_quantize=list(nodes),
                per_channel=self.per_channel,
                reduce_range=self.reduce_range,
                calibrate_method=getattr(CalibrationMethod, self.method),
                # one batch per calibration pass, so batches may differ in length (as the quantize_static stage does)
                extra_options={"CalibStridedMinMax": 1, "DefaultTensorType": onnx.TensorProto.FLOAT},
            )


class _Reader:
    """onnxruntime's CalibrationDataReader over a fixed list of feeds; ``set_range`` picks the batches of a pass."""

    def __init__(self, feeds: Sequence[Feeds]):
        self._all = [dict(f) for f in feeds]
        self.set_range(0, len(self._all))

    def __len__(self) -> int:
        return len(self._all)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._left = iter(self._all[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._left, None)


def onnxruntime_cpu(path: Path, threads: int = 1) -> Callable[[Feeds], np.ndarray]:
    """Run ``path`` on onnxruntime's CPU provider with ``threads`` threads; returns the first output."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda feeds: np.asarray(session.run(None, dict(feeds))[0])


def layer_errors(
    fp32_path: Path,
    feeds: Sequence[Feeds],
    *,
    int8_path: Path | None = None,
    nodes: Sequence[str] | None = None,
    quantize: Quantize | None = None,
    run: Run = onnxruntime_cpu,
    names_from: Path | None = None,
) -> Sensitivity:
    """Rank the nodes that ``int8_path`` quantized (or ``nodes``) by the error each brings to the logits alone.

    ``fp32_path`` is the graph the quantizer received; ``quantize`` defaults to ``DynamicQuantizer()``;
    ``names_from``: the exporter's own file, whose nodes of the same names keep torch's metadata (onnxsim drops it).
    """
    if not feeds:
        raise InputError(f"layer_errors: no feeds given for {fp32_path}: pass at least one batch")
    if int8_path is None and nodes is None:
        raise InputError("layer_errors: pass the int8 artifact (int8_path) or the nodes to measure (nodes)")
    quantize = quantize or DynamicQuantizer()
    fp32 = _load(fp32_path)
    targets = list(nodes) if nodes is not None else list(quantized_nodes(fp32, _load(int8_path)))
    by_name = {node.name: node for node in fp32.graph.node}
    if unknown := [name for name in targets if name not in by_name]:
        raise InputError(f"layer_errors: {', '.join(unknown)}: no node of that name in {fp32_path}")
    modules = _modules(fp32, targets, _load(names_from) if names_from is not None else None)
    reference = _logits(run(fp32_path), feeds)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sensitivity-") as tmp:
        for name in targets:
            alone = Path(tmp) / "one_node.onnx"
            quantize(fp32_path, alone, [name])
            form = _only(name, quantized_nodes(fp32, _load(alone)), quantize)
            errors = compare(reference, _logits(run(alone), feeds))
            node = by_name[name]
            rows.append(
                LayerError(node=name, op_type=node.op_type, quantized_as=form, module=modules[name], **dict(errors))
            )
    return Sensitivity(
        layers=tuple(rank(rows)),
        whole=compare(reference, _logits(run(int8_path), feeds)) if int8_path is not None else None,
        samples=int(reference.shape[0]),
        batches=len(feeds),
        method=_method(quantize, len(rows), int(reference.shape[0]), len(feeds)),
    )


def _only(name: str, forms: dict[str, str], quantize: Quantize) -> str:
    """What ``name`` became in a graph where it alone was to be quantized; a StageError if not it alone."""
    if name not in forms:
        raise StageError(f"layer_errors: quantizing node '{name}' alone left it fp32 ({_describe(quantize)})")
    if others := sorted(set(forms) - {name}):
        raise StageError(f"layer_errors: quantizing node '{name}' alone also quantized {', '.join(others)}")
    return forms[name]


def _modules(fp32: Any, names: Sequence[str], exported: Any | None) -> dict[str, str | None]:
    """Node name -> its torch module: read off the fp32 graph, else off the same-named node of the export."""
    graphs = [fp32] if exported is None else [fp32, exported]
    found: dict[str, str | None] = dict.fromkeys(names)
    for graph in graphs:
        params = {init.name for init in graph.graph.initializer}
        for node in graph.graph.node:
            if node.name in found and found[node.name] is None:
                found[node.name] = module_of(node, params)
    return found


def rank(rows: Sequence[LayerError]) -> list[LayerError]:
    """Worst first: highest relative error (lowest SQNR), then highest max abs error, then by name."""
    return sorted(rows, key=lambda r: (-r.relative_error, -r.max_abs_error, r.node))


def compare(reference: np.ndarray, candidate: np.ndarray) -> LogitErrors:
    """How far ``candidate`` logits are from ``reference`` (same shape; classes on the last axis)."""
    if reference.shape != candidate.shape:
        raise StageError(f"layer_errors: logits of shape {candidate.shape}, the fp32 graph's are {reference.shape}")
    ref, diff = reference.astype(np.float64), candidate.astype(np.float64) - reference.astype(np.float64)
    signal, noise = float(np.sum(ref**2)), float(np.sum(diff**2))
    agree = np.argmax(reference, axis=-1) == np.argmax(candidate, axis=-1)
    return LogitErrors(
        max_abs_error=float(np.max(np.abs(diff))),
        relative_error=float(np.sqrt(noise / signal)) if signal else float(np.sqrt(noise)),
        sqnr_db=float(10 * np.log10(signal / noise)) if noise and signal else None,
        top1_agreement=float(np.mean(agree)),
    )


def quantized_nodes(fp32: Any, int8: Any) -> dict[str, str]:
    """fp32 node name -> what it became in the int8 graph, for every node the int8 graph quantized (in graph order).

    Quantized: a node after which an int8 op is named (``<name>``, ``<name>_quant``, ``<name>_MatMul_quant``: the
    longest fp32 name it starts with); a node that kept its name and reads every one of its ``QDQ_INPUTS``
    dequantized from an initializer or a QuantizeLinear (static QDQ); a node whose output is dequantized (a Gather
    of an int8 table). A node that reads what a quantized node wrote, or one QDQ input of several, is not.
    """
    names = {node.name: node for node in fp32.graph.node if node.name}
    stored = {init.name for init in int8.graph.initializer}
    stored |= {out for node in int8.graph.node if node.op_type == "QuantizeLinear" for out in node.output}
    dequant = [node for node in int8.graph.node if node.op_type == "DequantizeLinear"]
    dequantized = {out for node in dequant if node.input[0] in stored for out in node.output}
    read = {name for node in dequant for name in node.input}
    found: dict[str, str] = {}
    for node in int8.graph.node:
        if node.op_type in INT8_OPS:
            origin = max((n for n in names if node.name == n or node.name.startswith(n + "_")), key=len, default=None)
            if origin is not None:
                found.setdefault(origin, node.op_type)
        elif node.op_type in QDQ_INPUTS and node.name in names:
            data = [node.input[i] for i in QDQ_INPUTS[node.op_type] if i < len(node.input) and node.input[i]]
            if data and all(name in dequantized for name in data):
                found.setdefault(node.name, f"{node.op_type} (QDQ)")
            elif any(name in read for name in node.output):
                found.setdefault(node.name, f"{node.op_type} (int8 output)")
    order = list(names)
    return dict(sorted(found.items(), key=lambda item: order.index(item[0])))


def module_of(node: Any, initializers: Collection[str] = ()) -> str | None:
    """The torch module a node came from: the dynamo exporter's metadata, else the TorchScript exporter's names."""
    meta = {prop.key: prop.value for prop in node.metadata_props}
    if "pkg.torch.onnx.name_scopes" in meta:  # ['', 'mlp', 'mlp.0', 'linear']: modules, then the op
        scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
        return (scopes[-2] or None) if len(scopes) >= 3 else None
    if "namespace" in meta:  # ': Model/mlp: Sequential/mlp.0: Linear/linear: aten.linear.default'
        scopes = [part.split(":")[0].strip() for part in meta["namespace"].split("/")]
        return (scopes[-2] or None) if len(scopes) >= 3 else None
    path = _scope_path(node.name)  # TorchScript: '/encoder/layer.0/attention/MatMul'
    params = [
        name.split(".")[:-1] for name in node.input if name in initializers and name.endswith((".weight", ".bias"))
    ]
    owner = ".".join(os.path.commonprefix(params)) if params else None  # fused embeddings: their common parent
    if owner and (path is None or owner == path or owner.endswith("." + path.rsplit(".", 1)[-1])):
        return owner  # 'head.out.weight' beside '/out/Gemm': the parameter's name is the whole path
    return path


def _scope_path(name: str) -> str | None:
    """'/encoder/layer.0/attention/MatMul' -> 'encoder.layer.0.attention'; '/mlp/mlp.0/Gemm' -> 'mlp.0'."""
    if not name.startswith("/"):
        return None
    parts: list[str] = []
    for scope in name.split("/")[1:-1]:
        if parts and scope.startswith(parts[-1] + "."):  # a Sequential's child is named after it: mlp/mlp.0
            parts[-1] = scope
        else:
            parts.append(scope)
    return ".".join(parts) or None


def _load(path: Path | None) -> Any:
    """The graph of an ONNX file (its external weights are not read)."""
    import onnx

    if path is None or not Path(path).is_file():
        raise InputError(f"layer_errors: ONNX file not found: {path}")
    return onnx.load(str(path), load_external_data=False)


def _logits(infer: Callable[[Feeds], np.ndarray], feeds: Sequence[Feeds]) -> np.ndarray:
    """The logits of every batch, one row per sample, in the order of the feeds."""
    return np.concatenate([np.asarray(infer(feed)) for feed in feeds], axis=0)


def _method(quantize: Quantize, nodes: int, samples: int, batches: int) -> str:
    """How the figures were made, in one sentence for the report."""
    return (
        f"each of {nodes} quantized nodes quantized alone in a copy of the fp32 graph ({_describe(quantize)}), "
        f"run on {samples} samples in {batches} batches; its logits against the fp32 graph's: max abs error, "
        "relative error ||q - f|| / ||f||, SQNR 10 log10(||f||^2 / ||q - f||^2) dB, top-1 agreement; worst first"
    )


def _describe(quantize: Quantize) -> str:
    """The quantizer in words: its ``description``, else its name."""
    return str(getattr(quantize, "description", getattr(quantize, "__name__", "the caller's quantizer")))
