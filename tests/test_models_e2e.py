"""Models defined only in this file go through a real run (export -> simplify -> quantize_dynamic, onnxruntime):
exit 0, every stage passing, and the padding check passing on every row (issue 14's "Done when")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from workbench.cli import main

HERE = Path(__file__).resolve().parent
VOCAB, WIDTH, CLASSES, POSITIONS = 120, 32, 2, 40


class TransformerClassifier(nn.Module):
    """nn.TransformerEncoder, batch first, src_key_padding_mask from attention_mask, masked mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        layer = nn.TransformerEncoderLayer(WIDTH, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)
        return self.head(_masked_mean(hidden, attention_mask))


class AttentionClassifier(nn.Module):
    """One nn.MultiheadAttention (key_padding_mask), a residual, masked mean pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.attention = nn.MultiheadAttention(WIDTH, num_heads=4, batch_first=True)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        attended, _ = self.attention(x, x, x, key_padding_mask=attention_mask == 0, need_weights=False)
        return self.head(_masked_mean(x + attended, attention_mask))


class ConvClassifier(nn.Module):
    """Conv1d over masked embeddings (padding reads as zeros, like the sequence's edge), masked max pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.conv = nn.Conv1d(WIDTH, WIDTH, kernel_size=3, padding=1)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask.unsqueeze(-1).to(torch.float32)
        x = (self.embed(input_ids) * keep).transpose(1, 2)
        features = torch.relu(self.conv(x)).transpose(1, 2) * keep - (1 - keep) * 1e4
        return self.head(features.max(dim=1).values)


class PositionalClassifier(nn.Module):
    """Learned positions for at most POSITIONS tokens: the model's code holds the sequence to that length."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.positions = nn.Embedding(VOCAB, WIDTH), nn.Embedding(POSITIONS, WIDTH)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        where = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.head(_masked_mean(torch.relu(self.embed(input_ids) + self.positions(where)), attention_mask))


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    keep = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * keep).sum(1) / keep.sum(1).clamp(min=1.0)


RECIPE = """\
root: {root}
reports: {tmp}/reports
cache: {tmp}/cache
model:
  class: test_models_e2e:{cls}
  weights: {tmp}/weights.pt
  inputs:
    - {{name: input_ids, feed: ids, dtype: int64, axes: [batch, sequence]}}
    - {{name: attention_mask, feed: mask, dtype: int64, axes: [batch, sequence]}}
  vocab_size: {vocab}
data:
  synthetic: {{size: 64, seed: 3, min_len: 4, max_len: 24}}
  batch_size: 16
bench: {{enabled: false}}
layer_errors: {{samples: 8}}
threads: 1
stages:
  - export: {{}}
  - simplify: {{}}
  - quantize_dynamic:
      op_types: [MatMul, Gemm, Gather]
      accept: {{min_agreement: 0.9, max_accuracy_drop: 0.1}}
"""


@pytest.mark.parametrize("cls", [TransformerClassifier, AttentionClassifier, ConvClassifier], ids=lambda c: c.__name__)
def test_model_from_this_file_passes_end_to_end_with_padding(cls: type[nn.Module], tmp_path: Path, capfd) -> None:
    torch.manual_seed(0)
    torch.save(cls().state_dict(), tmp_path / "weights.pt")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(root=HERE, tmp=tmp_path, cls=cls.__name__, vocab=VOCAB))
    code = main(["run", str(recipe), "--quiet"])
    out, err = capfd.readouterr()
    assert code == 0, out + err
    metrics = json.loads((tmp_path / "reports" / "recipe" / "metrics.json").read_text())
    assert "Traceback" not in out + err
    assert [s["stage"] for s in metrics["stages"]] == ["export", "simplify", "quantize_dynamic"]
    assert all(s["passed"] for s in metrics["stages"])
    assert metrics["reference"]["padding"]["passed"] and metrics["reference"]["samples"] == 64
    checks = [c for s in metrics["stages"] for c in s["checks"]]
    assert len(checks) == 3 and all(c["padding"]["passed"] for c in checks)
    export, _, quantized = metrics["stages"]
    assert export["facts"]["exporter"] == "torch.onnx.export(dynamo=True)"
    assert export["checks"][0]["check"]["comparison"]["max_abs_error"] < 1e-4
    assert export["checks"][0]["padding"]["comparison"]["max_abs_error"] < 1e-4  # padding changes nothing in fp32
    assert quantized["checks"][0]["precision"].startswith("int8")
    assert "### Padding" in (tmp_path / "reports" / "recipe" / "report.md").read_text()


def test_a_model_with_a_position_table_runs_once_the_recipe_names_its_longest_input(tmp_path: Path, capfd) -> None:
    """Without model.max_length the reference cannot take the synthetic set's longer samples (one line naming the
    key); with it, the export's sequence ends there and the synthetic set and every timed length fit (defaults 256)."""
    torch.manual_seed(0)
    torch.save(PositionalClassifier().state_dict(), tmp_path / "weights.pt")
    text = RECIPE.format(root=HERE, tmp=tmp_path, cls="PositionalClassifier", vocab=VOCAB)
    text = text.replace("seed: 3, min_len: 4, max_len: 24}", "seed: 3, min_len: 4}")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert main(["run", str(recipe), "--quiet"]) == 2  # the synthetic set's samples reach 256: one line, no work
    err = capfd.readouterr().err
    assert "PositionalClassifier.forward failed" in err and "model.max_length against the model" in err
    recipe.write_text(
        text.replace("  vocab_size:", f"  max_length: {POSITIONS}\n  vocab_size:")
        .replace("bench: {enabled: false}", "bench: {budget_seconds: 0.05, tune: false}")
    )
    code = main(["run", str(recipe), "--quiet"])
    out, err = capfd.readouterr()
    assert code == 0, out + err
    metrics = json.loads((tmp_path / "reports" / "recipe" / "metrics.json").read_text())
    assert metrics["stages"][0]["facts"]["dims"]["sequence"] == f"1..{POSITIONS}"
    assert max(t["case"]["length"] for t in metrics["bench"]["timings"]) == POSITIONS
    assert metrics["reference"]["samples"] == 64 and all(s["passed"] for s in metrics["stages"])
