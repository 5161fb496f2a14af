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
