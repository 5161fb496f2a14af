from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import task
from workbench.artifact import describe
from workbench.cli import main


def test_tiny_training_run_is_seeded_and_writes_a_state_dict(tmp_path, capsys):
    args = ["train", "--steps", "3", "--hidden-dim", "8", "--held-out", "20", "--max-len", "16", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a.pt")]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b.pt")]) == 0
    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    assert set(a) == set(task.TextClassifier().state_dict()) and a["rnn.weight_hh_l0"].shape == (32, 8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main([*args, "--seed", "1", "--out", str(tmp_path / "c.pt")]) == 0
    c = torch.load(tmp_path / "c.pt", weights_only=True)
    assert not torch.equal(a["fc.weight"], c["fc.weight"])


def test_training_learns_the_synthetic_task(tmp_path, capsys):
    """A small model, 120 steps: far above chance, so the data and the loop are wired right."""
    assert (
        main(
            [
                "train",
                "--steps",
                "120",
                "--hidden-dim",
                "32",
                "--held-out",
                "200",
                "--max-len",
                "32",
                "--lr",
                "0.01",
                "--quiet",
                "--out",
                str(tmp_path / "m.pt"),
            ]
        )
        == 0
    )
    accuracy = float(capsys.readouterr().out.split("held-out accuracy ")[1].split("%")[0])
    assert accuracy > 80


def test_bad_training_arguments(tmp_path, capsys):
    assert main(["train", "--steps", "0", "--out", str(tmp_path / "m.pt")]) == 2
    assert "--steps" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_sizes_count_external_data(tmp_path, fresh_weights):
    src = task.convert(fresh_weights, tmp_path / "inline.onnx")
    proto = onnx.load(src)
    onnx.save(
        proto, tmp_path / "external.onnx", save_as_external_data=True, location="external.onnx.data", size_threshold=0
    )
    inline, external = describe(tmp_path / "inline.onnx"), describe(tmp_path / "external.onnx")
    assert external.files == ("external.onnx", "external.onnx.data")
    data_bytes = (tmp_path / "external.onnx.data").stat().st_size
    assert external.bytes == (tmp_path / "external.onnx").stat().st_size + data_bytes
    assert external.bytes == pytest.approx(inline.bytes, rel=0.01)
    assert external.op_counts == inline.op_counts
    assert np.isclose(data_bytes, inline.bytes, rtol=0.01)


PROBE = '''
import torch
import torch.nn as nn


class Probe(nn.Module):
    """Takes (mask, ids) as a recipe declares them below, and records what it was fed."""

    TRAIN = {"steps": 4, "learning_rate": 0.05, "max_len": 12}
    seen = []

    def __init__(self, vocab_size=1000):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, mask, ids):
        Probe.seen.append((mask.dtype, tuple(mask.shape), int(mask.min()), ids.dtype, tuple(ids.shape), int(ids.max())))
        return self.fc(self.embedding(ids).mean(dim=0))
'''

RECIPE = """
root: .
model:
  class: probe:Probe
  weights: weights/probe.pt
  inputs:
    - {name: mask, feed: mask, dtype: int32, axes: [batch, sequence]}
    - {name: ids, feed: ids, dtype: int64, axes: [sequence, batch]}
  vocab_size: 300
data:
  synthetic: {size: 10, seed: 1, min_len: 8, max_len: 40}
stages:
  - export: {}
"""


def test_training_from_a_recipe_feeds_the_declared_inputs(tmp_path, capsys):
    """Class, inputs (order, feed, dtype, axes), vocabulary, weights path and held-out lengths come from the recipe;
    the class's TRAIN gives steps, lr and training lengths unless a flag says otherwise."""
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "r.yaml").write_text(RECIPE)
    args = ["train", "--recipe", str(tmp_path / "r.yaml"), "--held-out", "30", "--batch-size", "5", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'weights' / 'probe.pt'}: held-out accuracy " in out
    assert "on 30 samples of lengths 8-40 (seed 0, 4 steps of 5, training lengths 8-12, lr 0.05," in out
    import probe  # imported by the run, from the recipe's root

    training, held_out = probe.Probe.seen[:4], probe.Probe.seen[4:]
    for mask_dtype, mask_shape, mask_min, ids_dtype, ids_shape, _ in probe.Probe.seen:
        assert (mask_dtype, ids_dtype, mask_min) == (torch.int32, torch.int64, 1)  # equal lengths: no padding
        assert mask_shape == ids_shape[::-1]  # mask batch first, ids sequence first
    assert max(seen[-1] for seen in probe.Probe.seen) < 300  # the recipe's vocabulary
    assert all(shape[0] == 5 and 8 <= shape[1] <= 12 for _, shape, *_ in training)
    assert sum(shape[0] for _, shape, *_ in held_out) == 30 and max(shape[1] for _, shape, *_ in held_out) > 12
    assert set(torch.load(tmp_path / "weights" / "probe.pt", weights_only=True)) == {
        "embedding.weight",
        "fc.weight",
        "fc.bias",
    }


BERT = """
root: .
model:
  class: workbench.zoo:BertClassifier
  weights: weights/bert.pt
  kwargs: {hidden_size: 16, num_layers: 1, num_heads: 2, intermediate_size: 32, max_positions: 64}
  inputs:
    - {name: input_ids, feed: ids, dtype: int64, axes: [batch, sequence]}
    - {name: attention_mask, feed: mask, dtype: int64, axes: [batch, sequence]}
data:
  synthetic: {size: 10, seed: 1, min_len: 8, max_len: 40}
stages:
  - export: {}
"""


def test_a_zoo_bert_trains_with_its_mask(tmp_path, capsys):
    (tmp_path / "bert.yaml").write_text(BERT)
    args = ["train", "--recipe", str(tmp_path / "bert.yaml"), "--steps", "2", "--held-out", "10", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "bert.pt")]) == 0
    printed = capsys.readouterr().out
    assert "on 10 samples of lengths 8-40 (seed 0, 2 steps of 64, training lengths 8-64, lr 0.001," in printed
    state = torch.load(tmp_path / "bert.pt", weights_only=True)
    assert state["bert.bert.embeddings.word_embeddings.weight"].shape == (1000, 16)
    assert not (tmp_path / "weights").exists()  # --out wins over the recipe's path


def test_recipe_and_model_flags_do_not_mix(tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(RECIPE)
    assert main(["train", "--recipe", str(tmp_path / "r.yaml"), "--hidden-dim", "8"]) == 2
    assert "--model and --hidden-dim do not go with --recipe" in capsys.readouterr().err
    assert main(["train", "--recipe", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read recipe" in capsys.readouterr().err


def test_unknown_training_defaults_on_a_class_are_refused(tmp_path, capsys):
    (tmp_path / "probe.py").write_text(PROBE.replace('TRAIN = {"steps": 4,', 'TRAIN = {"epochs": 2, "steps": 4,'))
    (tmp_path / "r.yaml").write_text(RECIPE)
    assert main(["train", "--recipe", str(tmp_path / "r.yaml"), "--quiet"]) == 2
    assert "probe:Probe.TRAIN: unknown settings ['epochs']; allowed: steps, batch_size, learning_rate" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "weights").exists()
