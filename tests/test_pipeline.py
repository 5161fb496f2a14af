"""Real recipes on real models: torch export, onnxsim, ORT optimizer and quantizer, real files, real reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import task
from workbench.cli import main
from workbench.errors import StageError
from workbench.stages import Source
from workbench.stages.quantize_dynamic import QuantizeParams, quantize_dynamic

from reliability import record

DATA = "data:\n  synthetic: {size: %d, seed: 5, min_len: 4, max_len: 40}\n  batch_size: 16\n"
TEXT_MODEL = """\
model:
  class: task:TextClassifier
  weights: model.pt
"""
INT8_STAGES = """\
stages:
  - export: {opset: 17}
  - simplify: {}
  - ort_optimize: {}
  - quantize_dynamic: {op_types: [LSTM, Gemm, MatMul, Gather]}
"""


def _write(project: Path, name: str, text: str) -> Path:
    path = project / f"{name}.yaml"
    path.write_text(text)
    return path


def _metrics(project: Path, name: str) -> dict:
    return json.loads((project / "reports" / name / "metrics.json").read_text())


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory):
    """One cold run of the four-stage recipe on the committed model; shared by the tests that read it."""
    import shutil

    project = tmp_path_factory.mktemp("int8")
    for name in ("task.py", "model.pt"):
        shutil.copy(Path(task.__file__).parent / name, project / name)
    path = _write(project, "int8", TEXT_MODEL + DATA % 300 + INT8_STAGES)
    code = main(["run", str(path), "--quiet", "--no-bench"])
    return project, path, code


def test_int8_recipe_end_to_end(int8_run):
    project, _, code = int8_run
    assert code == 0
    metrics = _metrics(project, "int8")
    assert metrics["verdict"] == "passed"
    stages = {s["stage"]: s for s in metrics["stages"]}
    assert list(stages) == ["export", "simplify", "ort_optimize", "quantize_dynamic"]
    for name in ("export", "simplify", "ort_optimize"):
        assert stages[name]["check"]["max_abs_error"] <= 1e-5
        assert stages[name]["check"]["agreement"] == 1.0
    quant = stages["quantize_dynamic"]
    assert quant["artifact"]["op_counts"].get("DynamicQuantizeLSTM") == 1
    assert "LSTM" not in quant["artifact"]["op_counts"] and "Gemm" not in quant["artifact"]["op_counts"]
    assert quant["artifact"]["share_of_fp32"] <= 0.26
    assert quant["check"]["agreement"] >= 0.995
    assert stages["simplify"]["artifact"]["ops"] < stages["export"]["artifact"]["ops"]
    assert stages["ort_optimize"]["facts"]["fused_ops"] == 0  # an LSTM graph offers no transformer fusions
    for s in metrics["stages"]:
        assert s["artifact"]["inputs"]["text"] == ["sequence", "batch"]
        artifact = project / "reports" / "int8" / s["artifact"]["file"]
        assert artifact.is_file() and artifact.stat().st_size == s["artifact"]["bytes"]
    report = (project / "reports" / "int8" / "report.md").read_text()
    assert report.splitlines()[2].startswith("**PASSED**")
    assert "| pytorch fp32 | model.pt |" in report
    assert "LSTM -> DynamicQuantizeLSTM" in report
    assert "fusions found: none" in report
    assert metrics["reference"]["sha256"] in report


def test_int8_outputs_match_torch_on_fresh_inputs(int8_run):
    project, _, _ = int8_run
    folder = project / "reports" / "int8"
    model = task.build_model(task.load_state_dict(project / "model.pt"))
    ids = np.random.default_rng(0).integers(0, 1000, size=(64, 8))
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).numpy()
    for name, atol in (("export", 1e-5), ("simplify", 1e-5), ("ort_optimize", 1e-5), ("quantize_dynamic", 0.5)):
        got = ort.InferenceSession(str(folder / f"{name}.onnx")).run(None, {"text": ids})[0]
        assert np.max(np.abs(got - expected)) <= atol, name


def test_rerun_is_cached_and_force_redoes(int8_run, capsys):
    project, path, _ = int8_run
    first = _metrics(project, "int8")
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 0
    cached = _metrics(project, "int8")
    assert all(s["cached"] for s in cached["stages"]) and cached["reference"]["cached"]
    assert [s["artifact"]["sha256"] for s in cached["stages"]] == [s["artifact"]["sha256"] for s in first["stages"]]
    assert "(cached)" in (project / "reports" / "int8" / "report.md").read_text()
    assert main(["run", str(path), "--quiet", "--force", "--no-bench"]) == 0
    forced = _metrics(project, "int8")
    assert not any(s["cached"] for s in forced["stages"]) and not forced["reference"]["cached"]


def test_fp32_recipe_matches_task_convert(project):
    path = _write(project, "fp32", TEXT_MODEL + DATA % 100 + "stages:\n  - export: {opset: 17}\n")
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 0
    workbench_file = project / "reports" / "fp32" / "export.onnx"
    task_file = task.convert(project / "model.pt", project / "text_classifier.onnx")
    ids = np.random.default_rng(1).integers(0, 1000, size=(100, 3))
    a = ort.InferenceSession(str(workbench_file)).run(None, {"text": ids})[0]
    b = ort.InferenceSession(task_file).run(None, {"text": ids})[0]
    assert np.array_equal(a, b)


def test_other_modules_by_import_path(project):
    """A bag-of-embeddings MLP and a batch-first LSTM, imported by `module:Class` from the project root."""
    import tiny_models

    torch.manual_seed(0)
    torch.save(tiny_models.BagMLP().state_dict(), project / "mlp.pt")
    torch.save(tiny_models.BatchFirstLSTM().state_dict(), project / "bf.pt")
    mlp = _write(
        project,
        "mlp",
        "model: {class: tiny_models:BagMLP, weights: mlp.pt}\n"
        + DATA % 80
        + "stages:\n  - export: {}\n  - simplify: {}\n  - quantize_dynamic: {op_types: [Gemm, MatMul]}\n",
    )
    bf = _write(
        project,
        "bf",
        "model:\n  class: tiny_models:BatchFirstLSTM\n  weights: bf.pt\n"
        "  kwargs: {hidden: 24}\n  input: {axes: [batch, sequence]}\n"
        + DATA % 80
        + "stages:\n  - export: {}\n  - simplify: {}\n",
    )
    assert main(["run", str(mlp), "--quiet", "--no-bench"]) in (
        0,
        1,
    )  # random weights: int8 agreement is not the point here
    stages = {s["stage"]: s for s in _metrics(project, "mlp")["stages"]}
    assert stages["simplify"]["check"]["max_abs_error"] <= 1e-5
    assert stages["quantize_dynamic"]["artifact"]["op_counts"].get("MatMulInteger", 0) >= 2
    assert main(["run", str(bf), "--quiet", "--no-bench"]) == 0
    bf_stages = _metrics(project, "bf")["stages"]
    assert bf_stages[0]["artifact"]["inputs"]["text"] == ["batch", "sequence"]
    assert all(s["check"]["max_abs_error"] <= 1e-5 for s in bf_stages)


def test_impossible_threshold_fails_with_exit_1_and_a_failed_row(project, capsys):
    path = _write(
        project,
        "tight",
        TEXT_MODEL + DATA % 60 + INT8_STAGES.replace("Gather]}", "Gather], accept: {max_abs_error: 1e-9}}"),
    )
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 1
    metrics = _metrics(project, "tight")
    assert metrics["verdict"] == "FAILED"
    quant = metrics["stages"][-1]
    assert quant["verdict"] == "FAILED" and quant["check"]["failures"][0].startswith("max abs error")
    report = (project / "reports" / "tight" / "report.md").read_text()
    assert "**FAILED**: quantize_dynamic: max abs error" in report
    assert "| quantize_dynamic | quantize_dynamic.onnx |" in report and "| FAILED |" in report
    assert "limit 1e-09" in capsys.readouterr().out


def test_failed_stage_stops_later_stages(project):
    path = _write(
        project,
        "stop",
        TEXT_MODEL
        + DATA % 40
        + INT8_STAGES.replace("  - simplify: {}\n", "  - simplify: {accept: {max_abs_error: 0.0, rtol: 0.0}}\n"),
    )
    code = main(["run", str(path), "--quiet", "--no-bench"])
    metrics = _metrics(project, "stop")
    assert metrics["stages"][1]["check"]["max_abs_error"] > 0  # onnxruntime's LSTM kernel is not torch's
    assert code == 1
    assert [s["stage"] for s in metrics["stages"]] == ["export", "simplify"]
    assert metrics["skipped"] == ["ort_optimize", "quantize_dynamic"]


def test_continue_on_failure_runs_later_stages_and_still_exits_1(project):
    path = _write(
        project,
        "cont",
        TEXT_MODEL
        + DATA % 40
        + "continue_on_failure: true\n"
        + INT8_STAGES.replace("  - simplify: {}\n", "  - simplify: {accept: {max_abs_error: 0.0, rtol: 0.0}}\n"),
    )
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 1
    metrics = _metrics(project, "cont")
    assert [s["verdict"] for s in metrics["stages"]] == ["passed", "FAILED", "passed", "passed"]
    assert metrics["verdict"] == "FAILED" and metrics["skipped"] == []


def test_jsonl_evaluation_data(project):
    from workbench import data

    data.write_jsonl(data.synthetic(30, seed=9, max_len=30), project / "eval.jsonl")
    path = _write(project, "jsonl", TEXT_MODEL + "data: {jsonl: eval.jsonl, batch_size: 8}\nstages:\n  - export: {}\n")
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 0
    metrics = _metrics(project, "jsonl")
    assert metrics["reference"]["samples"] == 30 and metrics["data"]["jsonl"] == "eval.jsonl"
    assert "JSONL file `eval.jsonl`" in (project / "reports" / "jsonl" / "report.md").read_text()
    with open(project / "eval.jsonl", "a") as handle:
        handle.write('{"tokens": [1, 5000], "label": 0}\n')
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 2


def test_quantizer_refuses_lstm_whose_weights_are_computed(tmp_path, fresh_weights):
    """The dynamo-exporter trap: LSTM weights reached through Slice/Concat stay fp32, and the stage says so."""
    from onnx import helper

    src = task.convert(fresh_weights, tmp_path / "fp32.onnx")
    proto = onnx.load(src)
    lstm = next(n for n in proto.graph.node if n.op_type == "LSTM")
    weight = lstm.input[1]
    proto.graph.node.insert(0, helper.make_node("Identity", [weight], [weight + "_computed"]))
    lstm.input[1] = weight + "_computed"
    onnx.save(proto, tmp_path / "computed.onnx")
    with pytest.raises(StageError, match=r"LSTM .*not initializers.*run the simplify stage first"):
        quantize_dynamic(
            Source(onnx=tmp_path / "computed.onnx"), QuantizeParams(op_types=("LSTM",)), tmp_path / "q.onnx"
        )


def _hidden(folder: Path, prefix: str = ".") -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(prefix)} if folder.is_dir() else set()


# Where a run is killed: while the nth cache entry is being written (with --force they come in order:
# 1 the torch reference, 2 export, 3 its check, 4 simplify, 5 its check, 6 ort_optimize, ...), and while
# the new report folder is being filled.
KILL_POINTS = {
    "torch reference being computed": lambda cache, reports, seen: len(seen) >= 1,
    "export being validated": lambda cache, reports, seen: len(seen) >= 3,
    "ort_optimize being written": lambda cache, reports, seen: len(seen) >= 6,
    "report being published": lambda cache, reports, seen: bool(_hidden(reports, ".kill.new-")),
}


def _kill_when(cmd: list[str], project: Path, point: str, env: dict) -> int:
    """Start ``cmd`` and SIGKILL it as soon as the kill point is reached."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache, reports, seen = project / ".workbench-cache", project / "reports", set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= _hidden(cache)
        if KILL_POINTS[point](cache, reports, seen):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    return proc.wait()


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_interrupted_run_leaves_old_report_and_rerun_passes(project, point):
    from workbench.cache import Cache

    path = _write(project, "kill", TEXT_MODEL + DATA.replace("max_len: 40", "max_len: 120") % 400 + INT8_STAGES)
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 0
    report = project / "reports" / "kill"
    before = (report / "metrics.json").read_text()
    env = {**os.environ, "PYTHONPATH": str(Path(task.__file__).parent)}
    cmd = [sys.executable, "-m", "workbench", "run", str(path), "--quiet", "--force", "--no-bench"]
    assert _kill_when(cmd, project, point, env) == -signal.SIGKILL
    assert (report / "metrics.json").read_text() == before
    cache = Cache(project / ".workbench-cache")
    entries = [p.name for p in cache.folder.iterdir() if not p.name.startswith(".")]
    assert all(cache.get(name) is not None for name in entries), "a complete entry failed its hash check"
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 0
    assert json.loads((report / "metrics.json").read_text())["verdict"] == "passed"
    assert _hidden(report.parent, ".kill.") == {".kill.lock"}
    record("kill points survived")
