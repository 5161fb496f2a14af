"""The committed weights of every model family reach the held-out accuracy the README states (>= 95%)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workbench.cli import main

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "model.pt": [],
    "recipes/weights/bert.pt": ["--recipe", "recipes/bert.yaml"],
    "recipes/weights/bilstm.pt": ["--recipe", "recipes/bilstm.yaml"],
    "recipes/weights/gru.pt": ["--recipe", "recipes/gru.yaml"],
}


@pytest.mark.parametrize("weights", list(MODELS))
def test_committed_weights_reach_the_readme_accuracy(weights, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["train", "--evaluate", *MODELS[weights]]) == 0
    printed = re.search(r"held-out accuracy ([\d.]+%) on 1000 samples of lengths 8-256", capsys.readouterr().out)
    assert printed, "train --evaluate printed no accuracy"
    row = re.search(rf"\| `{re.escape(weights)}` \| ([\d.]+%) \|", (ROOT / "README.md").read_text())
    assert row, f"README's model table has no row for {weights}"
    assert printed.group(1) == row.group(1), f"README says {row.group(1)}, the weights give {printed.group(1)}"
    assert float(printed.group(1).rstrip("%")) >= 95.0
