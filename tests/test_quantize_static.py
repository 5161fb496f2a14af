"""quantize_static on real exports of tiny models: QDQ int8 close to fp32, outputs that do not depend on the batch."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from pydantic import ValidationError
from tiny_models import BagMLP, BatchFirstLSTM

from workbench import zoo
from workbench.errors import StageError
from workbench.stages import REGISTRY, Feeds, Source
from workbench.stages.quantize_static import STATIC_OP_TYPES, QuantizeStaticFacts

VOCAB = 200
Calibration = Callable[[int], Iterator[Feeds]]


def _tokens(rng: np.random.Generator, length: int, batch: int) -> np.ndarray:
    return rng.integers(0, VOCAB, (length, batch), dtype=np.int64)


def _export(
    module: torch.nn.Module, names: tuple[str, ...], example: tuple[torch.Tensor, ...], dst: Path, *, batch_first: bool
) -> Path:
    """torch.onnx.export(dynamo=False) with dynamic batch and sequence axes, as the export stage does."""
    layout = {0: "batch", 1: "sequence"} if batch_first else {0: "sequence", 1: "batch"}
    axes = {**{name: layout for name in names}, "logits": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notices about tracing; not what these tests are about
        torch.onnx.export(
            module.eval(), example, str(dst), dynamo=False, input_names=list(names), output_names=["logits"],
            dynamic_axes=axes, opset_version=17,
        )  # fmt: skip
    return dst


def _sequence_first(seed: int) -> Calibration:
    """Seeded calibration batches of token ids [sequence, batch] of mixed lengths, as Source.calibration gives."""

    def calibration(n: int) -> Iterator[Feeds]:
        rng = np.random.default_rng(seed)
        while n > 0:
            size = min(32, n)
            yield {"text": _tokens(rng, int(rng.integers(8, 64)), size)}
            n -= size

    return calibration


def _batches(rng: np.random.Generator, lengths: tuple[int, ...] = (12, 20, 32, 48), size: int = 50) -> list[Feeds]:
    """The evaluation set: 200 samples in four equal-length batches of 50 (no padding)."""
    return [{"text": _tokens(rng, length, size)} for length in lengths]


def _run(path: Path, feeds: Feeds) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _quantize(src: Path, dst: Path, calibration: Calibration | None, **params) -> QuantizeStaticFacts:
    spec = REGISTRY["quantize_static"]
    facts = spec.run(Source(onnx=src, calibration=calibration), spec.params.model_validate(params), dst)
    assert isinstance(facts, QuantizeStaticFacts)
    return facts


def _batch_dependence(path: Path, batches: list[Feeds], axis: int) -> float:
    """Largest |sample run alone - same sample inside its batch of 49 others|, over 10 samples of each batch."""
    worst = 0.0
    for feeds in batches:
        together = _run(path, feeds)
        for i in range(10):
            alone = _run(path, {k: np.take(v, [i], axis=axis) for k, v in feeds.items()})
            worst = max(worst, float(np.abs(alone[0] - together[i]).max()))
    return worst


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    """BagMLP (Embedding -> mean over tokens -> Linear -> ReLU -> Linear) trained briefly to count sentiment ids."""
    torch.manual_seed(0)
    model, rng = BagMLP(vocab_size=VOCAB, embed_dim=16, hidden=32), np.random.default_rng(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        ids = torch.from_numpy(_tokens(rng, int(rng.integers(8, 48)), 64))
        labels = (((ids >= 10) & (ids < 60)).sum(0) > ((ids >= 60) & (ids < 110)).sum(0)).long()
        loss = torch.nn.functional.cross_entropy(model(ids), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    dst = tmp_path_factory.mktemp("bag") / "export.onnx"
    return _export(model, ("text",), (torch.from_numpy(_tokens(rng, 16, 2)),), dst, batch_first=False)


@pytest.fixture(scope="module")
def bag_static(bag, tmp_path_factory) -> tuple[Path, QuantizeStaticFacts]:
    dst = tmp_path_factory.mktemp("static") / "quantize_static.onnx"
    return dst, _quantize(bag, dst, _sequence_first(7))


def test_static_int8_is_qdq_close_to_fp32_and_says_what_it_did(bag, bag_static):
    dst, facts = bag_static
    ops = Counter(node.op_type for node in onnx.load(str(dst)).graph.node)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= 6, ops
    assert facts.quantized == {"Gather": 1, "Gemm": 2}
    assert (facts.calibration_samples, facts.calibration_batches) == (128, 4)
    assert facts.preprocessed and facts.stayed_fp32 == {}
    assert facts.lines()[0].startswith(
        "quantized (qdq, minmax ranges from 128 samples in 4 batches, activations quint8"
    )
    assert dst.stat().st_size < 0.6 * bag.stat().st_size  # 15,104 bytes of fp32 weights, now int8
    batches = _batches(np.random.default_rng(99))
    fp32 = np.concatenate([_run(bag, f) for f in batches])
    int8 = np.concatenate([_run(dst, f) for f in batches])
    assert fp32.shape == int8.shape == (200, 2)
    assert np.mean(fp32.argmax(1) == int8.argmax(1)) >= 0.95
    error = np.abs(fp32 - int8)
    print(
        f"static int8 vs fp32 on 200 samples: agreement {np.mean(fp32.argmax(1) == int8.argmax(1)):.1%}, max abs "
        f"{error.max():.3g}, mean abs {error.mean():.3g}, logits up to {np.abs(fp32).max():.3g}"
    )
    assert 0 < error.mean() < 0.05 * np.abs(fp32).mean()


def test_static_output_does_not_depend_on_the_batch_unlike_dynamic(bag, bag_static, tmp_path):
    batches = _batches(np.random.default_rng(5))
    static = _batch_dependence(bag_static[0], batches, axis=1)
    spec = REGISTRY["quantize_dynamic"]
    dynamic_path = tmp_path / "quantize_dynamic.onnx"
    spec.run(Source(onnx=bag), spec.params(op_types=("Gemm", "Gather")), dynamic_path)
    dynamic = _batch_dependence(dynamic_path, batches, axis=1)
    print(f"batch dependence (max |alone - in batch|): static {static:.3g}, dynamic {dynamic:.3g}")
    assert static < 1e-6, static
    assert dynamic > 1e-4, dynamic


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_calibrate_on_batches_of_mixed_lengths(bag, tmp_path, method):
    """onnxruntime stacks one pass's values of a tensor; batches of different lengths must go one per pass."""
    facts = _quantize(bag, tmp_path / "q.onnx", _sequence_first(3), calibrate_method=method, calibration_samples=64)
    assert facts.quantized == {"Gather": 1, "Gemm": 2} and facts.calibration_batches == 2
    feeds = _batches(np.random.default_rng(1), lengths=(24,), size=100)[0]
    assert np.mean(_run(bag, feeds).argmax(1) == _run(tmp_path / "q.onnx", feeds).argmax(1)) >= 0.95


def test_qoperator_format_makes_qlinear_ops(bag, tmp_path):
    facts = _quantize(bag, tmp_path / "q.onnx", _sequence_first(7), quant_format="qoperator", per_channel=True)
    ops = Counter(node.op_type for node in onnx.load(str(tmp_path / "q.onnx")).graph.node)
    assert ops["QGemm"] == 2 and "Gemm" not in ops, ops
    assert facts.quantized == {"Gather": 1, "Gemm": 2}


def test_what_the_quantizer_says_goes_to_the_facts_not_the_terminal(bag, tmp_path, capfd):
    facts = _quantize(bag, tmp_path / "q.onnx", _sequence_first(7), preprocess=False, calibrate_method="entropy")
    assert not facts.preprocessed
    assert any(line.startswith("Please consider to run pre-processing before quantization") for line in facts.warnings)
    assert "Finding optimal threshold for each tensor using 'entropy' algorithm ..." in facts.warnings
    assert len(facts.warnings) == len(set(facts.warnings))
    assert capfd.readouterr() == ("", "")


def test_an_excluded_node_stays_fp32_and_the_facts_say_so(bag, tmp_path):
    gemms = [n.name for n in onnx.load(str(bag)).graph.node if n.op_type == "Gemm"]
    facts = _quantize(bag, tmp_path / "q.onnx", _sequence_first(7), nodes_to_exclude=[gemms[-1]])
    assert facts.quantized == {"Gather": 1, "Gemm": 1}
    assert facts.stayed_fp32["Gemm"].count == 1
    assert facts.stayed_fp32["Gemm"].weight_bytes == 32 * 2 * 4  # the last Linear's 32x2 fp32 matrix
    assert facts.stayed_fp32["Gemm"].reason == "in nodes_to_exclude"
    with pytest.raises(StageError, match=r"nodes_to_exclude names no node of the graph: nope \(e\.g\. its MatMul"):
        _quantize(bag, tmp_path / "r.onnx", _sequence_first(7), nodes_to_exclude=["nope"])


def test_an_lstm_stays_fp32_and_the_facts_say_why_and_how_much(tmp_path):
    torch.manual_seed(0)
    model = BatchFirstLSTM(vocab_size=VOCAB)
    src = _export(model, ("text",), (torch.randint(0, VOCAB, (2, 16)),), tmp_path / "lstm.onnx", batch_first=True)

    def calibration(n: int) -> Iterator[Feeds]:
        rng = np.random.default_rng(4)
        for _ in range(n // 16):
            yield {"text": _tokens(rng, int(rng.integers(8, 40)), 16).T.copy()}

    facts = _quantize(src, tmp_path / "q.onnx", calibration, calibration_samples=64, op_types=["Gemm", "Gather"])
    assert facts.quantized == {"Gather": 1, "Gemm": 1}
    assert facts.calibration_samples == 64 and facts.calibration_batches == 4  # batch first: the batch is 16
    lstm = facts.stayed_fp32["LSTM"]
    assert (lstm.count, lstm.weight_bytes) == (1, 4 * sum(p.numel() for p in model.rnn.parameters()))
    assert lstm.reason.startswith("onnxruntime has no static int8 kernel for it")
    assert "stayed fp32: 1 x LSTM (16,128 bytes of fp32 weights" in facts.lines()[1]
    assert Counter(n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node)["LSTM"] == 1


def test_a_small_bert_quantizes_statically_and_ignores_its_batch(tmp_path):
    torch.manual_seed(0)
    sizes = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_positions": 64}
    model = zoo.BertClassifier(vocab_size=VOCAB, **sizes)
    ids = torch.randint(0, VOCAB, (2, 16))
    src = _export(
        model, ("input_ids", "attention_mask"), (ids, torch.ones_like(ids)), tmp_path / "bert.onnx", batch_first=True
    )

    def calibration(n: int) -> Iterator[Feeds]:
        rng = np.random.default_rng(8)
        for _ in range(n // 16):
            ids = _tokens(rng, int(rng.integers(8, 48)), 16).T.copy()
            yield {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    facts = _quantize(src, tmp_path / "q.onnx", calibration, calibration_samples=32, per_channel=True)
    assert facts.quantized["MatMul"] >= 6 and facts.quantized["Gemm"] == 2, facts.quantized
    assert facts.calibration_samples == 32
    ids = _tokens(np.random.default_rng(2), 40, 24).T.copy()
    batch = [{"input_ids": ids, "attention_mask": np.ones_like(ids)}]
    assert _batch_dependence(tmp_path / "q.onnx", batch, axis=0) < 1e-6


def test_a_run_that_quantizes_nothing_fails_the_stage(bag, tmp_path):
    with pytest.raises(
        StageError,
        match=r"^quantize_static quantized nothing: no node of the op types asked for "
        r"\(Conv\) reads int8 afterwards; op types in this graph: Gather, Gemm, ReduceMean, Relu$",
    ):
        _quantize(bag, tmp_path / "q.onnx", _sequence_first(7), op_types=["Conv"])


def test_without_calibration_data_the_stage_refuses(bag, tmp_path):
    with pytest.raises(StageError, match=r"^quantize_static needs calibration data .* use quantize_dynamic"):
        _quantize(bag, tmp_path / "q.onnx", None)
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"op_types": ["Gemm", "LSTM"]}, "LSTM cannot be quantized statically by onnxruntime"),
        ({"op_types": ["Conv2d"]}, "op types this stage can quantize: MatMul, Gemm, Conv"),
        ({"op_types": []}, "at least 1 item"),
        ({"quant_format": "qdq8"}, "Input should be 'qdq' or 'qoperator'"),
        ({"calibrate_method": "kl"}, "Input should be 'minmax', 'entropy' or 'percentile'"),
        ({"calibration_samples": 0}, "greater than or equal to 1"),
        ({"per_channel": "yes"}, "Input should be a valid boolean"),
        ({"activation_type": "qint8", "weight_type": "quint8"}, "int8 activations with uint8 weights"),
        ({"calibration": 5}, "Extra inputs are not permitted"),
    ],
)
def test_bad_params_are_refused(params, message):
    with pytest.raises(ValidationError, match=message):
        REGISTRY["quantize_static"].params.model_validate(params)


def test_the_op_types_offered_are_the_ones_onnxruntime_quantizes_statically():
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    assert set(STATIC_OP_TYPES) <= set(QDQRegistry) | set(QLinearOpsRegistry)
    spec = REGISTRY["quantize_static"]
    assert spec.calibrates and spec.precision.name == "int8" and spec.takes == "onnx"
