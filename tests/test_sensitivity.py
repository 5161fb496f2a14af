"""Per-layer error: one Linear with outlier weights must rank first, with its torch module, on every exporter."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from workbench.decide.sensitivity import (
    DynamicQuantizer,
    StaticQuantizer,
    layer_errors,
    module_of,
    quantized_nodes,
)
from workbench.errors import InputError, StageError

VOCAB, LENGTH, BATCH = 100, 20, 16


class OutlierBag(nn.Module):
    """Embedding -> mean -> Linear(32,64) -> ReLU -> Linear(64,64) -> ReLU -> Linear(64,2).

    mlp.2 holds outliers x1000 on the inputs of a channel that is always 0 after the ReLU: the fp32 model
    never sees them, but per-tensor int8 weights of mlp.2 get a scale so coarse that all its other weights round to 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 32)
        self.mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.head = nn.Linear(64, 2)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.head(self.mlp(self.embedding(text).mean(dim=0)))


def _outlier_bag() -> OutlierBag:
    torch.manual_seed(0)
    model = OutlierBag().eval()
    with torch.no_grad():
        model.embedding.weight *= 4  # logits that depend on the input, not only on the biases
        model.mlp[0].weight[5] = 0
        model.mlp[0].bias[5] = -1.0  # channel 5 is dead after the ReLU
        model.mlp[2].weight[:, 5] *= 1000  # its outgoing weights: a few outliers
        model.mlp[2].bias.zero_()
        model.head.bias.zero_()
        logits = model(torch.randint(0, VOCAB, (LENGTH, 256)))
        model.head.bias[1] = -torch.median(logits[:, 1] - logits[:, 0])  # fp32 predicts each class half the time
    return model


def _export(model: nn.Module, path: Path, *, dynamo: bool) -> Path:
    """Sequence-first ids [length, batch] -> logits, with dynamic length and batch."""
    example = (torch.randint(0, VOCAB, (12, 3)),)
    if dynamo:
        dims = {0: torch.export.Dim("length"), 1: torch.export.Dim("batch")}
        torch.onnx.export(model, example, str(path), dynamo=True, input_names=["text"], dynamic_shapes=(dims,))
    else:
        axes = {"text": {0: "length", 1: "batch"}, "logits": {0: "batch"}}
        torch.onnx.export(
            model, example, str(path), dynamo=False, input_names=["text"], output_names=["logits"], dynamic_axes=axes
        )
    return path


@pytest.fixture(scope="module")
def feeds() -> list[dict[str, np.ndarray]]:
    """64 samples in 4 batches, seeded."""
    rng = np.random.default_rng(7)
    return [{"text": rng.integers(0, VOCAB, (LENGTH, BATCH)).astype(np.int64)} for _ in range(4)]


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    """The outlier model, exported by the TorchScript exporter."""
    return _export(_outlier_bag(), tmp_path_factory.mktemp("bag") / "bag.onnx", dynamo=False)


def _all_nodes(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node]


def test_outlier_layer_ranks_first_with_its_module(bag, feeds, tmp_path):
    int8 = tmp_path / "bag.int8.onnx"
    DynamicQuantizer()(bag, int8, _all_nodes(bag))
    result = layer_errors(bag, feeds, int8_path=int8)
    rows = {row.node: row for row in result.layers}
    assert set(rows) == {"/embedding/Gather", "/mlp/mlp.0/Gemm", "/mlp/mlp.2/Gemm", "/head/Gemm"}
    worst, rest = result.layers[0], result.layers[1:]
    assert (worst.node, worst.module, worst.op_type, worst.quantized_as) == (
        "/mlp/mlp.2/Gemm",
        "mlp.2",
        "Gemm",
        "MatMulInteger",
    )
    assert {row.node: row.module for row in rest} == {
        "/embedding/Gather": "embedding",
        "/mlp/mlp.0/Gemm": "mlp.0",
        "/head/Gemm": "head",
    }
    assert worst.relative_error > 0.8 and worst.sqnr_db is not None and worst.sqnr_db < 2  # logits all but gone
    assert worst.top1_agreement < 0.7  # quantizing it alone breaks accuracy: its logits no longer move
    for row in rest:
        assert 0 < row.relative_error < 0.05 and row.sqnr_db > 25 and row.top1_agreement >= 0.95
        assert worst.relative_error > 20 * row.relative_error and worst.max_abs_error > 20 * row.max_abs_error
    errors = [row.relative_error for row in result.layers]
    assert errors == sorted(errors, reverse=True)
    assert result.whole is not None and result.whole.relative_error > 0.8  # the whole int8 file carries the damage
    assert (result.samples, result.batches) == (64, 4)
    assert "quantize_dynamic" in result.method and "64 samples" in result.method
    assert type(result).model_validate_json(result.model_dump_json()) == result  # storable in metrics.json


def test_lstm_and_gemm_of_a_real_quantize_dynamic_both_get_rows(feeds, tmp_path):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import task

    torch.manual_seed(3)
    model = task.TextClassifier(vocab_size=VOCAB, embed_dim=16, hidden_dim=32).eval()
    fp32 = _export(model, tmp_path / "lstm.onnx", dynamo=False)
    int8 = tmp_path / "lstm.int8.onnx"
    quantize_dynamic(  # as the quantize_dynamic stage calls it
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["LSTM", "Gemm", "MatMul"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    result = layer_errors(fp32, feeds, int8_path=int8)
    rows = {row.node: (row.op_type, row.quantized_as, row.module) for row in result.layers}
    assert rows == {
        "/rnn/LSTM": ("LSTM", "DynamicQuantizeLSTM", "rnn"),
        "/fc/Gemm": ("Gemm", "MatMulInteger", "fc"),
    }
    for row in result.layers:
        assert 0 < row.max_abs_error < 0.05 and 20 < row.sqnr_db < 80 and row.top1_agreement >= 0.9
    assert result.whole is not None and result.whole.max_abs_error >= 0.5 * result.layers[0].max_abs_error


def test_dynamo_export_names_the_module_from_its_metadata(feeds, tmp_path):
    import onnx

    path = _export(_outlier_bag(), tmp_path / "bag_dynamo.onnx", dynamo=True)
    gemms = [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Gemm"]
    assert not any(name.startswith("/") for name in gemms)  # no TorchScript scope path to fall back on
    nodes = {node.name: node for node in onnx.load(str(path)).graph.node}
    assert sorted(module_of(nodes[name]) for name in gemms) == ["head", "mlp.0", "mlp.2"]  # metadata alone
    result = layer_errors(path, feeds, nodes=gemms)
    assert result.layers[0].module == "mlp.2"
    assert sorted(row.module for row in result.layers) == ["head", "mlp.0", "mlp.2"]
    assert result.whole is None
    assert result.layers[0].relative_error > 20 * result.layers[1].relative_error


def test_the_export_names_the_modules_that_onnxsim_forgot(feeds, tmp_path):
    import onnx
    import onnxsim

    import task

    torch.manual_seed(3)
    model = task.TextClassifier(vocab_size=VOCAB, embed_dim=16, hidden_dim=32).eval()
    export = _export(model, tmp_path / "export.onnx", dynamo=True)
    simplified, ok = onnxsim.simplify(onnx.load(str(export)))  # as the simplify stage does: it drops the metadata
    assert ok and not any(node.metadata_props for node in simplified.graph.node)
    onnx.save(simplified, str(tmp_path / "simplify.onnx"))
    lstm = [node.name for node in simplified.graph.node if node.op_type == "LSTM"]
    alone = layer_errors(tmp_path / "simplify.onnx", feeds, nodes=lstm)
    assert [(row.op_type, row.module) for row in alone.layers] == [("LSTM", None)]  # its weights are unnamed
    named = layer_errors(tmp_path / "simplify.onnx", feeds, nodes=lstm, names_from=export)
    assert [(row.op_type, row.module) for row in named.layers] == [("LSTM", "rnn")]
    assert named.layers[0].max_abs_error == alone.layers[0].max_abs_error > 0


@pytest.mark.parametrize(
    ("quant_format", "method", "form"), [("QDQ", "MinMax", "Gemm (QDQ)"), ("QOperator", "Entropy", "QGemm")]
)
def test_static_artifact_ranks_the_outlier_layer_first(bag, feeds, tmp_path, quant_format, method, form):
    import onnx

    rng = np.random.default_rng(11)  # calibration apart from the feeds measured, in batches of two lengths
    calibration = tuple({"text": rng.integers(0, VOCAB, (n, BATCH)).astype(np.int64)} for n in (LENGTH, 2 * LENGTH))
    quantize = StaticQuantizer(calibration, method=method, quant_format=quant_format)
    int8 = tmp_path / "bag.static.onnx"
    quantize(bag, int8, _all_nodes(bag))
    found = quantized_nodes(onnx.load(str(bag)), onnx.load(str(int8)))
    assert found == {
        "/embedding/Gather": "Gather (QDQ)" if quant_format == "QDQ" else "Gather (int8 output)",
        "/mlp/mlp.0/Gemm": form,
        "/mlp/mlp.2/Gemm": form,
        "/head/Gemm": form,
    }  # in QDQ, ReduceMean and Relu sit between Q/DQ pairs too, but only read what a quantized node wrote
    result = layer_errors(bag, feeds, int8_path=int8, quantize=quantize)
    assert (result.layers[0].node, result.layers[0].module) == ("/mlp/mlp.2/Gemm", "mlp.2")
    assert all(result.layers[0].relative_error > 10 * row.relative_error for row in result.layers[1:])
    assert f"quantize_static ({quant_format}, {method}" in result.method


class EmbedThenLinear(nn.Module):
    """Embedding -> Linear on every token: the Linear reads the Gather's output directly."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 8)
        self.proj = nn.Linear(8, 2)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embedding(text)).mean(dim=0)


def test_a_node_reading_a_quantized_tables_output_is_not_counted(feeds, tmp_path):
    import onnx

    torch.manual_seed(5)
    fp32 = _export(EmbedThenLinear().eval(), tmp_path / "embed.onnx", dynamo=False)
    table_only = tmp_path / "table.int8.onnx"
    DynamicQuantizer()(fp32, table_only, ["/embedding/Gather"])
    graph = onnx.load(str(table_only)).graph
    (matmul,) = [node for node in graph.node if node.op_type == "MatMul"]
    makers = {out: node.op_type for node in graph.node for out in node.output}
    assert makers[matmul.input[0]] == "DequantizeLinear"  # it reads the dequantized table rows
    assert quantized_nodes(onnx.load(str(fp32)), onnx.load(str(table_only))) == {
        "/embedding/Gather": "Gather (int8 output)"
    }
    (row,) = layer_errors(fp32, feeds, int8_path=table_only).layers
    assert (row.node, row.module) == ("/embedding/Gather", "embedding") and 0 < row.max_abs_error < 0.05


class TwoReaders(nn.Module):
    """Two Linears reading the same tensor, as a BERT's query, key and value do."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 8)
        self.query, self.key = nn.Linear(8, 2), nn.Linear(8, 2)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        pooled = self.embedding(text).mean(dim=0)
        return self.query(pooled) * self.key(pooled)


def test_static_qdq_of_one_reader_leaves_the_other_fp32(feeds, tmp_path):
    import onnx

    torch.manual_seed(9)
    fp32 = _export(TwoReaders().eval(), tmp_path / "two.onnx", dynamo=False)
    quantize = StaticQuantizer(tuple(feeds[:1]))
    query_only = tmp_path / "query.qdq.onnx"
    quantize(fp32, query_only, ["/query/Gemm"])
    graph = onnx.load(str(query_only)).graph
    makers = {out: node.op_type for node in graph.node for out in node.output}
    key = next(node for node in graph.node if node.name == "/key/Gemm")
    assert makers[key.input[0]] == "DequantizeLinear" and key.input[1] == "key.weight"  # a QDQ input, fp32 weights
    assert quantized_nodes(onnx.load(str(fp32)), onnx.load(str(query_only))) == {"/query/Gemm": "Gemm (QDQ)"}
    result = layer_errors(fp32, feeds, nodes=["/query/Gemm", "/key/Gemm"], quantize=quantize)
    assert sorted(row.module for row in result.layers) == ["key", "query"]
    assert all(0 < row.relative_error < 0.2 and row.top1_agreement > 0.9 for row in result.layers)


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("/bert/encoder/layer.0/attention/self/query/MatMul", "bert.encoder.layer.0.attention.self.query"),
        ("/mlp/mlp.0/Gemm", "mlp.0"),
        ("/Gemm", None),
        ("Attention_0", None),  # a node fused by onnxruntime's optimizer keeps no module
    ],
)
def test_torchscript_node_names_give_the_module(name, module):
    from onnx import helper

    assert module_of(helper.make_node("MatMul", ["x", "w"], ["y"], name=name)) == module


def test_parameter_names_complete_a_scope_path_that_lost_a_container():
    from onnx import helper

    node = helper.make_node("Gemm", ["x", "head.out.weight", "head.out.bias"], ["y"], name="/out/Gemm")
    assert module_of(node, {"head.out.weight", "head.out.bias"}) == "head.out"  # a ModuleDict's key
    tied = helper.make_node("Gemm", ["x", "embedding.weight"], ["y"], name="/lm_head/Gemm")
    assert module_of(tied, {"embedding.weight"}) == "lm_head"  # a tied weight does not move the node
    tables = [f"bert.embeddings.{t}.weight" for t in ("word_embeddings", "position_embeddings", "LayerNorm")]
    fused = helper.make_node(
        "EmbedLayerNormalization", ["ids", "types", *tables], ["y"], name="EmbedLayerNormalization_0"
    )
    assert module_of(fused, tables) == "bert.embeddings"  # onnxruntime's fusion of several modules: their parent


def test_user_errors(bag, feeds, tmp_path):
    with pytest.raises(InputError, match="no feeds given"):
        layer_errors(bag, [], nodes=["/head/Gemm"])
    with pytest.raises(InputError, match=r"pass the int8 artifact \(int8_path\) or the nodes"):
        layer_errors(bag, feeds)
    with pytest.raises(InputError, match="/nowhere/Gemm: no node of that name in"):
        layer_errors(bag, feeds, nodes=["/head/Gemm", "/nowhere/Gemm"])
    with pytest.raises(InputError, match="ONNX file not found"):
        layer_errors(tmp_path / "missing.onnx", feeds, nodes=["/head/Gemm"])


def test_a_quantizer_that_leaves_the_node_fp32_is_refused(bag, feeds):
    import shutil

    def copy_only(src: Path, dst: Path, nodes: list[str]) -> None:
        shutil.copy(src, dst)

    with pytest.raises(StageError, match="quantizing node '/head/Gemm' alone left it fp32 \\(copy_only\\)"):
        layer_errors(bag, feeds, nodes=["/head/Gemm"], quantize=copy_only)

    def all_of_them(src: Path, dst: Path, nodes: list[str]) -> None:
        DynamicQuantizer()(src, dst, ["/head/Gemm", "/mlp/mlp.0/Gemm"])

    with pytest.raises(StageError, match="alone also quantized /mlp/mlp.0/Gemm"):
        layer_errors(bag, feeds, nodes=["/head/Gemm"], quantize=all_of_them)


def test_identical_logits_have_no_sqnr():
    from workbench.decide.sensitivity import compare

    logits = np.array([[1.0, -1.0], [0.5, 2.0]], dtype=np.float32)
    same = compare(logits, logits)
    assert (same.max_abs_error, same.relative_error, same.sqnr_db, same.top1_agreement) == (0.0, 0.0, None, 1.0)
    flipped = compare(logits, logits[:, ::-1].copy())
    assert flipped.top1_agreement == 0.0 and math.isclose(flipped.sqnr_db, 10 * math.log10(6.25 / 12.5))
