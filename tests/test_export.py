"""The export stage on models defined here: torch.export (dynamo) by default with Dims for batch and sequence,
TorchScript on request; numbers checked on onnxruntime; failures and chatter kept off the terminal."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from workbench.errors import StageError
from workbench.stages import REGISTRY, Source, TorchSource
from workbench.stages import export as export_stage

VOCAB, WIDTH = 50, 16
SHAPES = [(1, 7), (3, 40), (5, 100)]  # (batch, length); none of them is the example's (2, 16)
MASKED = ("input_ids", "attention_mask")


def _pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the tokens the mask keeps: [batch, sequence, width] -> [batch, width]."""
    keep = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * keep).sum(1) / keep.sum(1)


class EncoderClassifier(nn.Module):
    """nn.TransformerEncoder, batch first, padding from the attention mask."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        layer = nn.TransformerEncoderLayer(WIDTH, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.fc = nn.Linear(WIDTH, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)
        return self.fc(_pool(hidden, attention_mask))


class AttentionClassifier(nn.Module):
    """One nn.MultiheadAttention over the embeddings, padded keys masked."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.attention = nn.MultiheadAttention(WIDTH, 4, batch_first=True)
        self.fc = nn.Linear(WIDTH, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        hidden, _ = self.attention(x, x, x, key_padding_mask=attention_mask == 0, need_weights=False)
        return self.fc(_pool(hidden, attention_mask))


class ConvClassifier(nn.Module):
    """Conv1d over the embeddings with padded positions zeroed before and after."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.conv = nn.Conv1d(WIDTH, WIDTH, kernel_size=3, padding=1)
        self.fc = nn.Linear(WIDTH, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask.unsqueeze(1).float()
        hidden = torch.relu(self.conv(self.embed(input_ids).transpose(1, 2) * keep)) * keep
        return self.fc(_pool(hidden.transpose(1, 2), attention_mask))


class PositionalClassifier(nn.Module):
    """Learned positions for at most 64 tokens, and says so: an unbounded sequence axis cannot be exported."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.positions = nn.Parameter(torch.randn(64, WIDTH))
        self.fc = nn.Linear(WIDTH, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > len(self.positions):
            raise ValueError(f"at most {len(self.positions)} tokens")
        return self.fc((self.embed(input_ids) + self.positions[: input_ids.shape[1]]).mean(1))


class Chatty(nn.Module):
    """Prints from Python and at the file-descriptor level (as C++ does) and warns while it is traced."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(WIDTH, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        print("python says: graph dump follows")
        os.write(2, b"fd 2 says: native progress\n")
        logging.getLogger("torch.onnx").warning("torch's own log handler says: step done")
        warnings.warn("see https://example.com/a/long/path/that/must/stay/whole?x=1 for details", stacklevel=1)
        return self.fc(torch.ones(input_ids.shape[0], WIDTH) * input_ids.float().mean(1, keepdim=True))


class Raising(nn.Module):
    """A forward that refuses its input."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise ValueError("Raising cannot take token ids")


def _ids(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and a mask whose last row is padded after its first half (every row keeps a token)."""
    ids = torch.from_numpy(np.random.default_rng(seed).integers(0, VOCAB, size=(batch, length)))
    mask = torch.ones_like(ids)
    mask[-1, length // 2 + 1 :] = 0
    return ids, mask


def _source(module: nn.Module, names: tuple[str, ...] = MASKED, max_length: int | None = None) -> TorchSource:
    """A batch-first source with the workbench's example: batch 2, length 16."""
    torch.manual_seed(0)
    module = module.eval()
    example = _ids(2, 16, seed=0)[: len(names)]
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in names}
    return TorchSource(
        lambda: module, names, "logits", lambda: example, {**axes, "logits": {0: "batch"}}, {"note": "test"}, max_length
    )


def _export(source: TorchSource, dst: Path, **params: object) -> export_stage.ExportFacts:
    """Run the registered export stage with ``params``."""
    spec = REGISTRY["export"]
    facts = spec.run(Source(torch=source), spec.params.model_validate(params), dst)
    assert isinstance(facts, export_stage.ExportFacts)
    return facts


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")  # the PyTorch reference's fast path
@pytest.mark.parametrize("cls", [EncoderClassifier, AttentionClassifier, ConvClassifier])
def test_default_exporter_matches_pytorch_at_other_batches_and_lengths(cls, tmp_path, capfd):
    source = _source(cls())
    facts = _export(source, tmp_path / "model.onnx")
    assert capfd.readouterr() == ("", "")  # the exporter's progress and log lines went to the facts
    assert "[torch.onnx]" in facts.log and os.listdir(tmp_path) == ["model.onnx"]
    assert (facts.exporter, facts.opset, facts.onnxscript) == ("torch.onnx.export(dynamo=True)", 18, _onnxscript())
    assert facts.dims == {"batch": "1..", "sequence": "1.."} and facts.torch == torch.__version__
    proto = onnx.load(str(tmp_path / "model.onnx"))
    dims = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert {p.key: p.value for p in proto.metadata_props} == {
        "note": "test",
        "onnx_opset": "18",
        "exporter": "torch.onnx.export(dynamo=True)",
    }
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, length in SHAPES:
        ids, mask = _ids(batch, length, seed=batch)
        assert int((mask == 0).sum()) > 0
        with torch.no_grad():
            expected = source.module(ids, mask).numpy()
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        assert got.shape == (batch, 2)
        assert np.abs(got - expected).max() <= 1e-5, (batch, length)


def test_torchscript_exporter_still_exports_text_classifier(tmp_path):
    from task import TextClassifier

    torch.manual_seed(0)
    module = TextClassifier(vocab_size=VOCAB, embed_dim=8, hidden_dim=16).eval()
    example = (_ids(2, 16, seed=0)[0].T.contiguous(),)  # [sequence, batch]
    axes = {"text": {0: "sequence", 1: "batch"}, "logits": {0: "batch"}}
    source = TorchSource(lambda: module, ("text",), "logits", lambda: example, axes, {})
    facts = _export(source, tmp_path / "ts.onnx", exporter="torchscript", opset=17)
    assert (facts.exporter, facts.opset, facts.onnxscript) == ("torch.onnx.export(dynamo=False)", 17, None)
    proto = onnx.load(str(tmp_path / "ts.onnx"))
    assert "LSTM" in {n.op_type for n in proto.graph.node} and proto.opset_import[0].version == 17
    session = ort.InferenceSession(str(tmp_path / "ts.onnx"), providers=["CPUExecutionProvider"])
    for batch, length in SHAPES:
        text = _ids(batch, length, seed=batch)[0].T.contiguous()
        with torch.no_grad():
            expected = module(text).numpy()
        assert np.abs(session.run(None, {"text": text.numpy()})[0] - expected).max() <= 1e-5


def test_a_length_the_model_holds_to_is_refused_unless_the_recipe_declares_it(tmp_path):
    # torch.export bounds the axis quietly (its graph would fail past 64 tokens): the stage refuses that
    with pytest.raises(StageError, match=r"narrows sequence to 0\.\.64 \(declared 1\.\.\).*set model\.max_length: N"):
        _export(_source(PositionalClassifier(), ("input_ids",)), tmp_path / "unbounded.onnx")
    facts = _export(_source(PositionalClassifier(), ("input_ids",)), tmp_path / "p.onnx", max_length=64)
    assert facts.dims == {"batch": "1..", "sequence": "1..64"}
    source = _source(PositionalClassifier(), ("input_ids",), max_length=64)  # the model's own bound
    assert _export(source, tmp_path / "s.onnx").dims == {"batch": "1..", "sequence": "1..64"}
    session = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    ids = _ids(3, 64, seed=3)[0]
    with torch.no_grad():
        expected = source.module(ids).numpy()
    assert np.abs(session.run(None, {"input_ids": ids.numpy()})[0] - expected).max() <= 1e-5


def test_a_forward_that_raises_is_a_stage_error_with_its_message_and_shapes(tmp_path, capfd):
    with pytest.raises(StageError) as caught:
        _export(_source(Raising(), ("input_ids",)), tmp_path / "r.onnx")
    message = str(caught.value)
    assert message.startswith("export (dynamo exporter) failed on example inputs input_ids [2, 16]: TorchExportError")
    assert message.endswith("caused by ValueError: Raising cannot take token ids")
    assert "\x1b[" not in message and capfd.readouterr() == ("", "")
    with pytest.raises(StageError, match=r"torchscript exporter.*input_ids \[2, 16\].*Raising cannot take token ids"):
        _export(_source(Raising(), ("input_ids",)), tmp_path / "r.onnx", exporter="torchscript")


def test_what_the_exporter_and_the_model_print_goes_whole_into_the_facts(tmp_path, capfd):
    facts = _export(_source(Chatty(), ("input_ids",)), tmp_path / "c.onnx")
    assert capfd.readouterr() == ("", "")
    assert "python says: graph dump follows" in facts.log and "fd 2 says: native progress" in facts.log
    assert "torch's own log handler says: step done" in facts.log
    assert "see https://example.com/a/long/path/that/must/stay/whole?x=1 for details" in facts.warnings


def test_a_model_over_the_limit_keeps_its_weights_in_one_file_beside_it(tmp_path):
    dst = tmp_path / "big.onnx"
    _export(_source(ConvClassifier()), dst)
    assert export_stage._finish(dst, {"k": "v"}, limit=1024) is True
    assert sorted(os.listdir(tmp_path)) == ["big.onnx", "big.onnx.data"]
    outside = onnx.load(str(dst), load_external_data=False).graph.initializer
    assert {e.value for t in outside for e in t.external_data if e.key == "location"} == {"big.onnx.data"}
    assert (tmp_path / "big.onnx.data").stat().st_size > 4 * WIDTH * WIDTH * 3  # the conv's weights at least
    ids, mask = _ids(3, 40, seed=1)
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0].shape == (3, 2)


def _onnxscript() -> str:
    import onnxscript

    return onnxscript.__version__


def test_a_second_lstm_export_in_one_process_keeps_the_sequence_axis(tmp_path):
    """torch 2.13 caches dispatch choices on each op: without clearing them, the second export of an LSTM in one
    process (a second run in the same process) came back with the sequence fixed at the example's length."""
    from task import TextClassifier

    axes = {"text": {0: "sequence", 1: "batch"}, "logits": {0: "batch"}}
    example = (_ids(2, 16, seed=0)[0].T.contiguous(),)
    for attempt in range(2):
        torch.manual_seed(attempt)
        module = TextClassifier(vocab_size=VOCAB, embed_dim=8, hidden_dim=16).eval()
        source = TorchSource(lambda m=module: m, ("text",), "logits", lambda: example, axes, {})
        facts = _export(source, tmp_path / f"lstm{attempt}.onnx")
        assert facts.dims["sequence"] == "1..", (attempt, facts.dims)
        session = ort.InferenceSession(str(tmp_path / f"lstm{attempt}.onnx"), providers=["CPUExecutionProvider"])
        text = _ids(3, 40, seed=attempt)[0].T.contiguous()
        with torch.no_grad():
            assert np.abs(session.run(None, {"text": text.numpy()})[0] - module(text).numpy()).max() <= 1e-5


class MaskIgnored(nn.Module):
    """Declares an attention mask it never reads (as a DeBERTa-v2 without token types takes token_type_ids)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.fc = nn.Embedding(VOCAB, WIDTH), nn.Linear(WIDTH, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(input_ids).mean(1))


@pytest.mark.parametrize(("exporter", "put_back"), [("torchscript", ("attention_mask",)), ("dynamo", ())])
def test_a_declared_input_the_model_does_not_read_stays_an_input_of_the_file(tmp_path, exporter, put_back):
    """The TorchScript exporter drops it, and the file then refused the inputs the recipe declares (exit 2)."""
    source = _source(MaskIgnored())
    facts = _export(source, tmp_path / "m.onnx", exporter=exporter)
    assert facts.unused_inputs == put_back
    assert ("inputs the model does not read" in "\n".join(facts.lines())) == bool(put_back)
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert list(shapes) == list(MASKED) and shapes["attention_mask"] == ["batch", "sequence"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    ids, mask = _ids(3, 9, seed=1)
    with torch.no_grad():
        expected = source.module(ids, mask).numpy()
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-5
