"""Every input of every cache key: changing it is a miss, changing nothing is a hit (real runs of a tiny model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from workbench import environment
from workbench.cli import main

RECIPE = """\
model: {class: tiny_models:BagMLP, weights: mlp.pt}
data: {synthetic: {size: 24, seed: 4, min_len: 3, max_len: 12}, batch_size: 8, min_samples: 10}
bench: {budget_seconds: 0.01, latency_lengths: [4], throughput: {batch: 2, length: 4}, chart_lengths: [2, 4], tune: false,
  cache_when_busy: true}
stages:
  - export: {exporter: torchscript, opset: 17}
  - simplify: {}
"""


def _run(project: Path, *flags: str) -> dict:
    assert main(["run", str(project / "k.yaml"), "--quiet", *flags]) == 0
    return json.loads((project / "reports" / "k" / "metrics.json").read_text())


def _hits(metrics: dict) -> dict[str, bool]:
    """Which cached things this run reused: the reference, each stage, each stage's check, the benchmarks."""
    out = {"reference": metrics["reference"]["cached"]}
    for s in metrics["stages"]:
        out[s["stage"]] = s["cached"]
        out[f"check {s['stage']}"] = all(e["cached"] for e in s["checks"])
    out["bench"] = bool(metrics["bench"] and metrics["bench"]["cached"])
    return out


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A project whose cache holds one complete run (benchmarks included)."""
    import tiny_models

    project = tmp_path_factory.mktemp("warm")
    shutil.copy(Path(__file__).parent / "tiny_models.py", project / "tiny_models.py")
    torch.manual_seed(0)
    torch.save(tiny_models.BagMLP().state_dict(), project / "mlp.pt")
    (project / "k.yaml").write_text(RECIPE)
    assert not any(_hits(_run(project)).values())  # cold: nothing reused
    return project


@pytest.fixture
def copy(warm, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(warm, project)
    return project


def _edit(project: Path, old: str, new: str) -> None:
    path = project / "k.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_nothing_changed_is_a_hit_for_everything(copy):
    assert all(_hits(_run(copy)).values())


def _other_weights(project: Path) -> None:
    import tiny_models

    torch.manual_seed(1)
    torch.save(tiny_models.BagMLP().state_dict(), project / "mlp.pt")


def _other_code(project: Path) -> None:
    path = project / "tiny_models.py"
    path.write_text(path.read_text() + "\n# an edit that changes the model's source file\n")


MISS = "reference", "export", "check export", "simplify", "check simplify", "bench"
CHANGES = {
    # change -> (how, what must be recomputed; everything else must still be a hit)
    "weights": (_other_weights, MISS),
    # the same weights under other code or kwargs: redone, but they export to the same bytes, so the checks
    # (keyed by the artifact's content) are reused
    "model code": (_other_code, ("reference", "export", "simplify", "bench")),
    "model kwargs": (
        lambda p: _edit(p, "weights: mlp.pt}", "weights: mlp.pt, kwargs: {hidden: 16}}"),
        ("reference", "export", "simplify", "bench"),
    ),
    "stage parameters": (lambda p: _edit(p, "opset: 17", "opset: 16"), MISS[1:]),
    # the synthetic set draws its noise ids from the vocabulary: other samples, and the same graph re-validated
    "vocabulary size": (lambda p: _edit(p, "weights: mlp.pt}", "weights: mlp.pt, vocab_size: 500}"), MISS),
    # other export parameters that give the same bytes (nothing to fold in this model): both stages are redone
    # (the chain of keys changed), their checks and the benchmarks, keyed by artifact content, are reused
    "parameters, same artifact": (
        lambda p: _edit(p, "opset: 17}", "opset: 17, constant_folding: false}"),
        ("export", "simplify"),
    ),
    "synthetic seed": (lambda p: _edit(p, "seed: 4", "seed: 5"), ("reference", "check export", "check simplify")),
    "synthetic size": (lambda p: _edit(p, "size: 24", "size: 25"), ("reference", "check export", "check simplify")),
    "batch size": (
        lambda p: _edit(p, "batch_size: 8", "batch_size: 4"),
        ("reference", "check export", "check simplify"),
    ),
    "threads": (lambda p: _edit(p, "stages:", "threads: 1\nstages:"), ("bench",)),
    "bench budget": (lambda p: _edit(p, "budget_seconds: 0.01", "budget_seconds: 0.02"), ("bench",)),
    "bench cases": (lambda p: _edit(p, "latency_lengths: [4]", "latency_lengths: [5]"), ("bench",)),
    "session options": (
        lambda p: _edit(
            p, "stages:", "runtimes: [{onnxruntime: {graph_optimization_level: ORT_ENABLE_BASIC}}]\nstages:"
        ),
        ("check export", "check simplify", "bench"),
    ),
    "engines": (
        lambda p: _edit(p, "stages:", "runtimes: [onnxruntime, openvino]\nstages:"),
        ("check export", "check simplify", "bench"),
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_changing_one_input_is_a_miss_for_what_depends_on_it(copy, change):
    how, misses = CHANGES[change]
    how(copy)
    hits = _hits(_run(copy))
    assert {name for name, hit in hits.items() if not hit} == set(misses), hits


def test_jsonl_content_is_part_of_the_key(copy):
    from workbench import data

    data.write_jsonl(data.synthetic(10, seed=1, max_len=10), copy / "eval.jsonl")
    _edit(copy, "synthetic: {size: 24, seed: 4, min_len: 3, max_len: 12}", "jsonl: eval.jsonl")
    _run(copy)
    assert _hits(_run(copy))["reference"]
    with open(copy / "eval.jsonl", "a") as handle:
        handle.write('{"tokens": [200, 201], "label": 1}\n')
    hits = _hits(_run(copy))
    assert not hits["reference"] and not hits["check export"] and hits["export"]


@pytest.mark.parametrize("tool", ["torch", "onnxsim"])
def test_tool_versions_are_part_of_the_stage_keys(copy, monkeypatch, tool):
    real = environment.tool_versions
    monkeypatch.setattr(environment, "tool_versions", lambda runtimes=(): {**real(runtimes), tool: "0.0.0-other"})
    hits = _hits(_run(copy, "--no-bench"))
    assert not hits["export"] and not hits["simplify"]
    assert hits["reference"] == (tool != "torch")  # the reference's logits depend on torch alone


def test_engine_version_and_machine_are_part_of_the_bench_key(copy, monkeypatch):
    from workbench.runtimes import ENGINES

    real = environment.machine
    monkeypatch.setattr(environment, "machine", lambda: {**real(), "cpu": "another CPU"})
    assert not _hits(_run(copy))["bench"]
    monkeypatch.setattr(environment, "machine", real)
    spec = ENGINES["onnxruntime"]
    monkeypatch.setitem(ENGINES, "onnxruntime", type(spec)(spec.name, spec.params, spec.load, None, None))
    hits = _hits(_run(copy))  # the engine now reports another version ("-")
    assert not hits["bench"] and not hits["check export"] and hits["export"]


def test_rebench_and_force(copy):
    hits = _hits(_run(copy, "--rebench"))
    assert not hits["bench"] and hits["export"] and hits["reference"]
    assert not any(_hits(_run(copy, "--force")).values())


def test_an_unchanged_rerun_loads_no_model_and_no_engine(copy):
    """Everything cached: the rerun builds no PyTorch model and no session (no torch, onnxruntime or matplotlib
    import at all), which is what keeps it to about a second. Run in a fresh interpreter."""
    import subprocess
    import sys

    script = (
        "import sys; from workbench.cli import main; code = main(['run', 'k.yaml', '--quiet']); "
        "print(code, *(m in sys.modules for m in ('torch', 'onnxruntime', 'matplotlib', 'openvino')))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=copy, capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[-5:] == ["0", "False", "False", "False", "False"], done.stdout + done.stderr
    assert all(_hits(json.loads((copy / "reports" / "k" / "metrics.json").read_text())).values())


def test_torch_version_is_part_of_the_pytorch_rows_of_the_bench_key(copy, monkeypatch):
    real = environment.tool_versions
    monkeypatch.setattr(environment, "tool_versions", lambda runtimes=(): {**real(runtimes), "torch": "0.0.0-other"})
    assert not _hits(_run(copy))["bench"]


def test_a_stage_s_own_code_is_part_of_its_key(copy, monkeypatch):
    """Editing a stage's module (its file's sha256 is in the key) redoes that stage and what follows from it."""
    real = environment.source_sha256
    monkeypatch.setattr(environment, "source_sha256", lambda f: "edited" if f.__name__ == "simplify" else real(f))
    hits = _hits(_run(copy, "--no-bench"))
    assert hits["export"] and hits["check export"] and not hits["simplify"]
