"""Search: a Linear whose outlier weights break int8 alone is ranked worst, left fp32 by a trial, and shipped.

The model is defined here only: it solves the synthetic sentiment task exactly (ids 10-59 count +1, 60-109 -1),
through fc1 -> fc2 -> fc3 (2048 wide, near identity). fc2 also holds weights of 1000 on an input channel that is
always 0 after the ReLU: fp32 never sees them, but int8 weights of fc2 (per tensor or per output channel) take a
scale so coarse that everything else in fc2 rounds to 0.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import onnxruntime as ort
import numpy as np
import pytest
import torch
from torch import nn

from workbench.cli import main
from workbench.decide import search
from workbench.errors import RecipeError
from workbench.recipe import parse
from workbench.results import Run

WIDTH, DEAD = 2048, 5
RECIPE = """\
model: {class: "test_search:OutlierNet", weights: w.pt}
data:
  synthetic: {size: 300, seed: 5, min_len: 4, max_len: 40}
  batch_size: 32
threads: 2
bench: {budget_seconds: 0.3, latency_lengths: [32], throughput: {batch: 16, length: 32}, chart_lengths: [16, 32],
        tune: false, cache_when_busy: true}
layer_errors: {samples: 32}
stages:
  - export: {exporter: torchscript, opset: 17}
target: {batch: 1, length: 32}
budget: %s
search:
  stage: quantize_dynamic
  vary: {per_channel: [false, true], exclude_most_sensitive: [0, 1]}
  max_trials: 4
"""
TIGHT = "{max_accuracy_drop: 0.01, min_agreement: 0.99}"
LOOSE = "{max_accuracy_drop: 0.6, min_agreement: 0.4}"


class OutlierNet(nn.Module):
    """Embedding(16) -> mean over the sequence -> fc1 -> ReLU -> fc2 -> ReLU -> fc3 -> ReLU -> head; ids [sequence, batch]."""

    def __init__(self, vocab_size: int = 1000, width: int = WIDTH):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 16)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, width), nn.Linear(width, width), nn.Linear(width, width)
        self.head = nn.Linear(width, 2)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(self.embedding(text).mean(dim=0)))
        return self.head(torch.relu(self.fc3(torch.relu(self.fc2(x)))))


def outlier_weights(width: int = WIDTH) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model, half = OutlierNet(width=width), width // 2
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embedding.weight[10:60, 0], model.embedding.weight[60:110, 0] = 1.0, -1.0
        model.fc1.weight[:half, 0], model.fc1.weight[half:, 0] = 1.0, -1.0  # ReLU(x) and ReLU(-x)
        model.fc1.weight[DEAD, 0], model.fc1.bias[DEAD] = 0.0, -1.0  # channel DEAD is always 0 after the ReLU
        for fc in (model.fc2, model.fc3):
            fc.weight.copy_(torch.eye(width) + 0.002 * torch.randn(width, width))
        model.fc2.weight[:, DEAD] = 1000.0  # the outliers, on the dead channel's outgoing weights
        model.head.weight[1, :half], model.head.weight[1, half:] = 1.0, -1.0
        model.head.weight[0] = -model.head.weight[1]
    return model.state_dict()


def _run(project: Path, budget: str) -> tuple[int, float, Run, str]:
    path = project / "outlier.yaml"
    path.write_text(RECIPE % budget)
    t0 = time.perf_counter()
    code = main(["run", str(path), "--quiet"])
    took = time.perf_counter() - t0
    report = project / "reports" / "outlier"
    return code, took, Run.load((report / "metrics.json").read_text()), (report / "report.md").read_text()


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One cold run of the search, then an unchanged rerun, then a rerun with a looser budget."""
    project = tmp_path_factory.mktemp("outlier")
    torch.save(outlier_weights(), project / "w.pt")
    cold = _run(project, TIGHT)
    shutil.copytree(project / "reports" / "outlier", project / "cold")  # the reruns publish over it
    again = _run(project, TIGHT)
    loose = _run(project, LOOSE)
    return project, cold, again, loose


def test_the_outlier_layer_ranks_worst_and_the_search_leaves_it_fp32(searched):
    _, (code, _, run, report), _, _ = searched
    assert code == 0 and run.decision is not None
    first, second = run.decision.trials
    assert first.label == "per_channel=false"
    assert first.layer_errors is not None and first.layer_errors.layers[0].module == "fc2"
    worst = first.layer_errors.layers[0]
    assert worst.node == "/fc2/Gemm" and worst.relative_error > 0.9  # fc2 alone in int8 wipes the signal out
    assert all(layer.relative_error < 0.05 for layer in first.layer_errors.layers[1:])
    (on_ort,) = first.engines
    assert not on_ort.within_budget and on_ort.agreement < 0.7
    assert second.params["nodes_to_exclude"] == ["/fc2/Gemm"] and second.label.endswith("exclude 1 (/fc2/Gemm)")
    (on_ort,) = second.engines
    assert on_ort.within_budget and on_ort.accuracy_drop == 0.0 and on_ort.agreement == 1.0
    assert run.decision.search == "2 trials; stopped at trial 2: within the budget on every target's engine"
    assert "`/fc2/Gemm` (fc2), " in report  # the trials table names the worst node and its module


def test_the_ship_section_names_the_trial_and_its_file_runs(searched):
    project, (_, _, run, report), _, _ = searched
    (choice,) = run.decision.choices
    assert choice.shipped == "onnxruntime:trial2" and choice.file == "ship/onnxruntime_b1_l32.onnx"
    losers = {c.row: c for c in choice.candidates if c.outcome != "shipped"}
    assert losers["onnxruntime:trial1"].outcome == "over budget"
    assert losers["onnxruntime:export"].outcome in ("slower", "indistinguishable and bigger")
    ship_section = report.split("## Ship", 1)[1].split("###", 1)[0]
    assert "**onnxruntime:trial2**" in ship_section and "`onnxruntime:trial1`: over budget" in ship_section
    shipped = project / "cold" / choice.file
    session = json.loads(Path(f"{shipped}.session.json").read_text())
    assert session["engine"] == "onnxruntime" and session["threads"] == 2 and session["row"] == "onnxruntime:trial2"
    ids = np.array([[12, 70, 15, 200, 30]], dtype=np.int64).T  # three positives, one negative: class 1
    (logits,) = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"]).run(None, {"text": ids})
    assert logits.shape == (1, 2) and logits[0, 1] - logits[0, 0] > 100


def test_an_unchanged_rerun_reuses_every_trial(searched):
    _, cold, (code, took, run, _), _ = searched
    assert code == 0 and all(t.cached for t in run.decision.trials) and run.bench.cached
    assert run.decision.choices == cold[2].decision.choices


def test_a_looser_budget_reuses_the_trials_and_changes_the_decision(searched):
    _, _, _, (code, _, run, _) = searched
    (trial,) = run.decision.trials  # the first trial is now within the budget: the search stops there
    assert trial.cached and trial.engines[0].within_budget
    (choice,) = run.decision.choices
    assert choice.shipped == "onnxruntime:trial1"  # every weight int8: the smallest file, and no slower
    assert run.decision.budget.max_accuracy_drop == 0.6


@pytest.mark.parametrize(
    "search_text, message",
    [
        ("{stage: quantize_dynamic, vary: {calibrate_method: [entropy]}}", "search.vary.calibrate_method: no searched"),
        ("{stage: quantize_dynamic, vary: {per_channel: [maybe]}}", "per_channel"),
        ("{stage: quantize_dynamic, vary: {exclude_most_sensitive: [-1]}}", "exclude_most_sensitive: a list of node"),
        ("{stage: export}", "search.stage"),
    ],
)
def test_bad_searches_are_refused_in_one_line(tmp_path, search_text, message):
    text = "model: {class: 'task:TextClassifier', weights: model.pt}\nstages: [{export: {}}]\nsearch: %s\n"
    with pytest.raises(RecipeError, match=message):
        search.variants(parse(text % search_text, tmp_path / "r.yaml"))


def test_variants_put_exclusion_innermost_and_replace_a_quantizing_last_stage(tmp_path):
    text = (
        "model: {class: 'task:TextClassifier', weights: model.pt}\n"
        "stages: [{export: {}}, {quantize_dynamic: {op_types: [LSTM]}}]\n"
        "search: {stage: [quantize_dynamic, quantize_static], vary: {exclude_most_sensitive: [0, 2], "
        "per_channel: [true, false], calibrate_method: [entropy]}}\n"
    )
    recipe = parse(text, tmp_path / "r.yaml")
    got = [(v.stage, dict(v.values), v.exclude) for v in search.variants(recipe)]
    assert got == [
        ("quantize_dynamic", {"per_channel": True}, 0), ("quantize_dynamic", {"per_channel": True}, 2),
        ("quantize_dynamic", {"per_channel": False}, 0), ("quantize_dynamic", {"per_channel": False}, 2),
        ("quantize_static", {"per_channel": True, "calibrate_method": "entropy"}, 0),
        ("quantize_static", {"per_channel": True, "calibrate_method": "entropy"}, 2),
        ("quantize_static", {"per_channel": False, "calibrate_method": "entropy"}, 0),
        ("quantize_static", {"per_channel": False, "calibrate_method": "entropy"}, 2),
    ]
    assert search._replaces_last(recipe) and search._base_params(recipe, "quantize_dynamic")["op_types"] == ["LSTM"]
