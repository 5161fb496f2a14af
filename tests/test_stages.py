"""The optimizing stages on real exports of tiny zoo models: BERT fusions, dynamic int8, and what stays fp32."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from workbench import recipe, zoo
from workbench.errors import RecipeError, StageError
from workbench.stages import REGISTRY, Source, TorchSource

HEADS, HIDDEN, LAYERS, VOCAB, POSITIONS = 2, 32, 2, 200, 64


def _export(
    module: torch.nn.Module, names: tuple[str, ...], example: tuple[torch.Tensor, ...], dst: Path, *, batch_first: bool
) -> Path:
    """Export with the workbench's own export stage (TorchScript exporter, dynamic batch and sequence axes)."""
    layout = ("batch", "sequence") if batch_first else ("sequence", "batch")
    axes = {name: dict(enumerate(layout)) for name in names}
    source = TorchSource(module.eval, names, "logits", lambda: example, {**axes, "logits": {0: "batch"}}, {})
    spec = REGISTRY["export"]
    spec.run(Source(torch=source), spec.params(exporter="torchscript", opset=17), dst)
    return dst


def _run(spec_name: str, src: Path, dst: Path, **params) -> dict:
    """The stage's facts as they are stored (its typed facts model, dumped as JSON data)."""
    spec = REGISTRY[spec_name]
    facts = spec.run(Source(onnx=src), spec.params.model_validate(params), dst)
    assert isinstance(facts, spec.facts)
    return facts.model_dump(mode="json")


def _ops(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _logits(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = zoo.BertClassifier(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        num_heads=HEADS,
        intermediate_size=64,
        max_positions=POSITIONS,
    ).eval()
    ids = torch.randint(0, VOCAB, (2, 16))
    dst = tmp_path_factory.mktemp("bert") / "export.onnx"
    return model, _export(model, ("input_ids", "attention_mask"), (ids, torch.ones_like(ids)), dst, batch_first=True)


@pytest.fixture(scope="module")
def fused(bert, tmp_path_factory) -> tuple[Path, dict]:
    dst = tmp_path_factory.mktemp("fused") / "ort_optimize.onnx"
    facts = _run("ort_optimize", bert[1], dst, model_type="bert", num_heads=HEADS, hidden_size=HIDDEN)
    return dst, facts


def _padded_batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, VOCAB, (3, 20))
    mask = np.ones_like(ids)
    mask[1, 12:] = 0  # one padded row, so the fused attention's mask path is exercised
    return {"input_ids": ids, "attention_mask": mask}


def test_ort_optimize_fuses_a_bert_and_keeps_its_outputs(bert, fused):
    model, _ = bert
    path, facts = fused
    expected = {"EmbedLayerNormalization": 1, "Attention": LAYERS, "BiasGelu": LAYERS}
    expected["SkipLayerNormalization"] = 2 * LAYERS
    assert {k: v for k, v in facts["fusions"].items() if v} == expected
    assert facts["fused_ops"] == sum(expected.values()) and facts["warnings"] == []
    assert _ops(path)["Attention"] == LAYERS and _ops(path)["Softmax"] == 0
    attention = next(node for node in onnx.load(str(path)).graph.node if node.op_type == "Attention")
    assert [a.i for a in attention.attribute if a.name == "num_heads"] == [HEADS]
    feeds = _padded_batch()
    with torch.no_grad():
        reference = model(*(torch.from_numpy(a) for a in feeds.values())).numpy()
    np.testing.assert_allclose(_logits(path, feeds), reference, atol=1e-5, rtol=1e-4)


def test_ort_optimize_without_sizes_fuses_no_attention_and_says_why(bert, tmp_path):
    facts = _run("ort_optimize", bert[1], tmp_path / "o.onnx", model_type="bert")
    assert facts["fusions"]["Attention"] == 0 and facts["fusions"]["EmbedLayerNormalization"] == 0
    assert facts["fusions"]["SkipLayerNormalization"] == 2 * LAYERS
    assert any("Failed to detect num_heads and hidden_size" in w for w in facts["warnings"])


def _as_exported_from(config_type: str, src: Path, dst: Path) -> Path:
    """``src`` with the metadata the export of a Hugging Face folder writes from its config.json."""
    model = onnx.load(str(src))
    onnx.helper.set_model_props(model, {"model_type": config_type, "num_heads": str(HEADS), "hidden_size": str(HIDDEN)})
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize(
    ("config_type", "family"), [("distilbert", "bert"), ("roberta", "bert"), ("bert", "bert"), ("gpt_neox", "gpt2")]
)
def test_ort_optimize_maps_a_config_model_type_as_optimum_does(bert, tmp_path, config_type, family):
    """A folder's config names its architecture (distilbert, roberta, ...); the optimizer only knows graph
    families, and given a name it does not know it fuses nothing (it once crashed on the plain model it returned)."""
    src = _as_exported_from(config_type, bert[1], tmp_path / "export.onnx")
    facts = _run("ort_optimize", src, tmp_path / "o.onnx")
    named = "" if config_type == family else f" (config.json: {config_type})"
    assert facts["sizes"] == f"{family}{named}, {HEADS} heads, hidden {HIDDEN}"
    if family == "bert":
        assert {k: v for k, v in facts["fusions"].items() if v}["Attention"] == LAYERS
    # the default and a named type are different parameters, so they never share a cache entry
    params = REGISTRY["ort_optimize"].params
    assert params().model_dump() != params(model_type="bert").model_dump()


def test_ort_optimize_refuses_a_config_model_type_it_has_no_fusions_for_unless_the_recipe_names_one(bert, tmp_path):
    src = _as_exported_from("modernbert", bert[1], tmp_path / "export.onnx")
    refusal = r"model_type 'modernbert'.*set ort_optimize: \{model_type: \.\.\.\} to one of bert,"
    with pytest.raises(StageError, match=refusal):
        _run("ort_optimize", src, tmp_path / "o.onnx")
    facts = _run("ort_optimize", src, tmp_path / "o.onnx", model_type="bert")  # the recipe's word wins
    assert facts["fusions"]["Attention"] == LAYERS and facts["sizes"].startswith("bert (config.json: modernbert)")


@pytest.mark.parametrize("sizes", [{"num_heads": 4}, {"hidden_size": 32}, {"num_heads": 3, "hidden_size": 32}])
def test_ort_optimize_sizes_come_together(sizes):
    with pytest.raises(ValueError, match="give num_heads and hidden_size both"):
        REGISTRY["ort_optimize"].params.model_validate({"model_type": "bert", **sizes})


def test_quantize_dynamic_quantizes_a_fused_bert(fused, tmp_path):
    """Fails with "Unable to find data type for weight_name=..." unless DefaultTensorType is passed."""
    src, _ = fused
    dst = tmp_path / "q.onnx"
    facts = _run("quantize_dynamic", src, dst, op_types=["MatMul", "Attention", "EmbedLayerNormalization"])
    assert facts["quantized"] == {
        "Gemm -> MatMulInteger": 2,  # pooler and classifier: onnxruntime makes them MatMul + Add first
        "MatMul -> MatMulInteger": 3 * LAYERS,
        "Attention -> QAttention": LAYERS,
        "EmbedLayerNormalization -> QEmbedLayerNormalization": 1,
    }
    assert facts["stayed_fp32"] == {}
    ops = _ops(dst)
    assert ops["QAttention"] == LAYERS and ops["QEmbedLayerNormalization"] == 1
    assert ops["MatMulInteger"] == 3 * LAYERS + 2
    assert ops["Attention"] == ops["EmbedLayerNormalization"] == ops["MatMul"] == 0
    feeds = _padded_batch()
    assert np.abs(_logits(dst, feeds) - _logits(src, feeds)).max() < 0.05  # random weights, logits about 0.1


def test_quantize_dynamic_says_what_stayed_fp32_in_a_bert(fused, tmp_path):
    """Gather asked for, but a fused BERT's embedding tables are inside EmbedLayerNormalization: they stay fp32."""
    src, _ = fused
    dst = tmp_path / "q.onnx"
    facts = _run("quantize_dynamic", src, dst, op_types=["MatMul", "Attention", "Gather"])
    assert "Gather -> Gather of an int8 table" not in facts["quantized"]
    tables = (VOCAB + POSITIONS + 2) * HIDDEN * 4  # word, position and token-type embeddings, float32
    assert facts["stayed_fp32"] == {
        "EmbedLayerNormalization": {
            "count": 1,
            "weight_bytes": tables,
            "share_of_file": round(tables / dst.stat().st_size, 4),
            "reason": "not in op_types",
        }
    }


@pytest.fixture(scope="module")
def gru(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = zoo.GRUClassifier(vocab_size=VOCAB, embed_dim=8, hidden_dim=16)
    dst = tmp_path_factory.mktemp("gru") / "e.onnx"
    return _export(model, ("text",), (torch.randint(0, VOCAB, (16, 3)),), dst, batch_first=False)


def test_a_gru_stays_fp32_and_the_facts_say_how_much(gru, tmp_path):
    dst = tmp_path / "q.onnx"
    facts = _run("quantize_dynamic", gru, dst, op_types=["Gemm", "MatMul", "Gather"])
    assert facts["quantized"] == {"Gemm -> MatMulInteger": 1, "Gather -> Gather of an int8 table": 1}
    weights = (3 * 16 * 8 + 3 * 16 * 16 + 2 * 3 * 16) * 4  # W [1, 3H, E], R [1, 3H, H], B [1, 6H], float32
    assert facts["stayed_fp32"] == {
        "GRU": {
            "count": 1,
            "weight_bytes": weights,
            "share_of_file": round(weights / dst.stat().st_size, 4),
            "reason": "onnxruntime has no dynamic int8 kernel for it",
        }
    }
    assert _ops(dst)["GRU"] == 1 and _ops(dst)["MatMulInteger"] == 1


def test_asking_for_gemm_quantizes_what_onnxruntime_turns_it_into(gru, tmp_path):
    """onnxruntime rewrites Gemm as MatMul + Add before quantizing: asking for Gemm alone must still quantize it."""
    facts = _run("quantize_dynamic", gru, tmp_path / "q.onnx", op_types=["Gemm"])
    assert facts["quantized"] == {"Gemm -> MatMulInteger": 1}
    assert set(facts["stayed_fp32"]) == {"GRU", "Gather"}
    assert facts["stayed_fp32"]["Gather"]["reason"] == "not in op_types"
    assert _ops(tmp_path / "q.onnx")["MatMulInteger"] == 1


def test_a_bilstm_quantizes_completely(tmp_path):
    torch.manual_seed(0)
    model = zoo.BiLSTMClassifier(vocab_size=VOCAB, embed_dim=8, hidden_dim=8)
    src = _export(model, ("input_ids",), (torch.randint(0, VOCAB, (2, 16)),), tmp_path / "e.onnx", batch_first=True)
    facts = _run("quantize_dynamic", src, tmp_path / "q.onnx", op_types=["LSTM", "Gemm", "Gather"])
    assert facts["quantized"] == {
        "LSTM -> DynamicQuantizeLSTM": 2,
        "Gemm -> MatMulInteger": 1,
        "Gather -> Gather of an int8 table": 1,
    }
    assert facts["stayed_fp32"] == {}


RECIPE = """
root: .
model:
  class: workbench.zoo:GRUClassifier
  weights: gru.pt
  inputs: [{name: text, feed: ids, axes: [sequence, batch]}]
stages:
  - export: {}
  - simplify: {}
  - quantize_dynamic: {op_types: [Gemm, GRU]}
"""


def test_asking_to_quantize_a_gru_is_a_recipe_error(tmp_path):
    path = tmp_path / "gru.yaml"
    path.write_text(RECIPE)
    with pytest.raises(RecipeError) as caught:
        recipe.load(path)
    assert str(caught.value) == (
        f"{path}: stages[2].quantize_dynamic.op_types[1]: 'GRU' is not allowed: GRU cannot be quantized "
        "dynamically by onnxruntime (it has no dynamic int8 GRU kernel; leave it out and it stays fp32); "
        "op types it can quantize: LSTM, Gemm, MatMul, Gather, Attention, EmbedLayerNormalization"
    )
    path.write_text(RECIPE.replace("GRU]", "Conv]"))
    with pytest.raises(RecipeError, match=r"op_types\[1\]: 'Conv' is not allowed: op types this stage can quantize: L"):
        recipe.load(path)


def test_a_weight_read_by_two_ops_counts_once(tmp_path):
    """Two MatMuls share one fp32 matrix; asked to quantize only Gather, the matrix's bytes count once."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((16, 16), dtype=np.float32), "w")
    table = numpy_helper.from_array(np.ones((50, 16), dtype=np.float32), "table")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["x"]),
            helper.make_node("MatMul", ["x", "w"], ["y"]),
            helper.make_node("MatMul", ["y", "w"], ["z"]),
        ],
        "shared",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 16])],
        [weight, table],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "in.onnx")
    dst = tmp_path / "q.onnx"
    facts = _run("quantize_dynamic", tmp_path / "in.onnx", dst, op_types=["Gather"])
    assert facts["quantized"] == {"Gather -> Gather of an int8 table": 1}
    share = round(16 * 16 * 4 / dst.stat().st_size, 4)
    assert facts["stayed_fp32"] == {
        "MatMul": {"count": 2, "weight_bytes": 16 * 16 * 4, "share_of_file": share, "reason": "not in op_types"}
    }


def test_a_quantizer_that_finds_nothing_to_quantize_fails_the_stage(gru, tmp_path):
    """op_types that the graph does not have (an LSTM asked of a GRU model) would give an 'int8' file that is the
    fp32 one: the stage refuses, naming what it was asked for and what does carry fp32 weights."""
    with pytest.raises(StageError) as caught:
        _run("quantize_dynamic", gru, tmp_path / "q.onnx", op_types=["LSTM"])
    assert str(caught.value) == (
        "quantize_dynamic quantized nothing: no op of the types asked for (LSTM) reads fp32 weights in this graph; "
        "ops with fp32 weights here: GRU, Gather, Gemm"
    )


def test_an_execution_provider_this_onnxruntime_lacks_is_a_recipe_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "model: {class: task:TextClassifier, weights: model.pt}\n"
        "runtimes: [{onnxruntime: {providers: [CPUExecutionProvder]}}]\nstages: [{export: {}}]\n"
    )
    with pytest.raises(
        RecipeError,
        match=r"runtimes\[0\].onnxruntime.providers: .*CPUExecutionProvder: not available "
        r"in this onnxruntime; available: .*CPUExecutionProvider",
    ):
        recipe.load(path)
