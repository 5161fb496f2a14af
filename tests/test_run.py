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

DATA = "data:\n  synthetic: {size: %d, seed: 5, min_len: 4, max_len: 40}\n  batch_size: 16\n  min_samples: 10\n"
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
        (engine,) = stages[name]["checks"]
        assert engine["row"] == f"onnxruntime:{name}" and engine["precision"] == "fp32"
        assert engine["check"]["comparison"]["max_excess"] <= 1e-5  # the product's rule: |diff| - 1e-5 * |ref| <= 1e-5
        assert engine["check"]["comparison"]["agreement"] == 1.0
        assert engine["batch_dependence"] is None and engine["padding"] is None
    quant = stages["quantize_dynamic"]
    assert quant["artifact"]["op_counts"].get("DynamicQuantizeLSTM") == 1
    assert "LSTM" not in quant["artifact"]["op_counts"] and "Gemm" not in quant["artifact"]["op_counts"]
    assert quant["share_of_export"] <= 0.26
    (engine,) = quant["checks"]
    assert engine["check"]["comparison"]["agreement"] >= 0.995
    assert engine["precision"].startswith("int8: DynamicQuantizeLSTM 1")
    dependence = engine["batch_dependence"]
    assert dependence["samples"] == 256 and 0 < dependence["max_abs_diff"] < 0.5 and dependence["agreement"] > 0.95
    assert stages["simplify"]["artifact"]["ops"] < stages["export"]["artifact"]["ops"]
    assert stages["ort_optimize"]["facts"]["fused_ops"] == 0  # an LSTM graph offers no transformer fusions
    for s in metrics["stages"]:
        assert s["artifact"]["inputs"]["text"] == ["sequence", "batch"]
        artifact = project / "reports" / "int8" / s["artifact"]["file"]
        assert artifact.is_file() and artifact.stat().st_size == s["artifact"]["bytes"]
    report = (project / "reports" / "int8" / "report.md").read_text()
    assert report.splitlines()[2].startswith("**PASSED**")
    assert (
        "| pytorch fp32 | model.pt |" in report and "| onnxruntime:quantize_dynamic | quantize_dynamic.onnx |" in report
    )
    assert "### Batch dependence of quantized artifacts" in report and "### Padding" not in report
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
    for name in ("export", "simplify", "ort_optimize"):
        got = ort.InferenceSession(str(folder / f"{name}.onnx")).run(None, {"text": ids})[0]
        assert np.all(np.abs(got - expected) <= 1e-5 + 1e-5 * np.abs(expected)), name  # the fp32 rule
    got = ort.InferenceSession(str(folder / "quantize_dynamic.onnx")).run(None, {"text": ids})[0]
    assert np.max(np.abs(got - expected)) <= 0.5 and np.mean(got.argmax(1) == expected.argmax(1)) >= 0.95


def test_rerun_is_cached_and_force_redoes(int8_run, tmp_path):
    import shutil

    project = tmp_path / "copy"  # a copy (cache included): the shared run stays as it was
    shutil.copytree(int8_run[0], project)
    path = project / "int8.yaml"
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
        "  kwargs: {hidden: 24}\n  inputs: [{name: text, axes: [batch, sequence]}]\n"
        + DATA % 80
        + "stages:\n  - export: {}\n  - simplify: {}\n",
    )
    assert main(["run", str(mlp), "--quiet", "--no-bench"]) in (
        0,
        1,
    )  # random weights: int8 agreement is not the point here
    stages = {s["stage"]: s for s in _metrics(project, "mlp")["stages"]}
    assert stages["simplify"]["checks"][0]["check"]["comparison"]["max_excess"] <= 1e-5
    assert stages["quantize_dynamic"]["artifact"]["op_counts"].get("MatMulInteger", 0) >= 2
    assert main(["run", str(bf), "--quiet", "--no-bench"]) == 0
    bf_stages = _metrics(project, "bf")["stages"]
    assert bf_stages[0]["artifact"]["inputs"]["text"] == ["batch", "sequence"]
    assert all(s["checks"][0]["check"]["comparison"]["max_excess"] <= 1e-5 for s in bf_stages)


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
    assert quant["verdict"] == "FAILED" and quant["checks"][0]["check"]["failures"][0].startswith("max abs error")
    report = (project / "reports" / "tight" / "report.md").read_text()
    assert "**FAILED**: quantize_dynamic: onnxruntime:quantize_dynamic: max abs error" in report
    assert "| onnxruntime:quantize_dynamic | quantize_dynamic.onnx |" in report and "| FAILED |" in report
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
    assert metrics["stages"][1]["checks"][0]["check"]["comparison"]["max_abs_error"] > 0  # onnxruntime's LSTM kernel is not torch's
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
    path = _write(project, "jsonl", TEXT_MODEL + "data: {jsonl: eval.jsonl, batch_size: 8, min_samples: 10}\nstages:\n  - export: {}\n")
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 0
    metrics = _metrics(project, "jsonl")
    assert metrics["reference"]["samples"] == 30 and metrics["data"]["jsonl"] == "eval.jsonl"
    assert "JSONL file `eval.jsonl`" in (project / "reports" / "jsonl" / "report.md").read_text()
    with open(project / "eval.jsonl", "a") as handle:
        handle.write('{"tokens": [1, 5000], "label": 0}\n')
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 2


def test_quantizer_refusal_end_to_end(project, capsys):
    """Export without constant folding leaves the LSTM's weights computed by Slice/Concat nodes: the quantizer
    cannot quantize them, the stage says so, the run records it, skips what follows and exits 1."""
    path = _write(
        project,
        "refused",
        TEXT_MODEL + DATA % 30 + "stages:\n  - export: {constant_folding: false}\n"
        "  - quantize_dynamic: {op_types: [LSTM]}\n  - simplify: {}\n",
    )
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 1
    metrics = _metrics(project, "refused")
    export, quant = metrics["stages"]
    assert export["verdict"] == "passed" and quant["verdict"] == "FAILED" and quant["artifact"] is None
    assert quant["error"].startswith("quantize_dynamic left ops in fp32: LSTM") and quant["checks"] == []
    assert metrics["skipped"] == ["simplify"] and metrics["verdict"] == "FAILED"
    report = (project / "reports" / "refused" / "report.md").read_text()
    assert "| quantize_dynamic | - | - | - | - | - | - | - | - | FAILED |" in report
    assert "Not run: simplify (quantize_dynamic failed to produce an artifact)." in report and "run the simplify stage first" in capsys.readouterr().out


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


# Where a run is killed: the run pauses at a named checkpoint (WORKBENCH_TEST_PAUSE_AT, see tests/hooks/sitecustomize.py),
# says so with a file, and the test kills it there: no polling race, and the phase it hit is known.
KILL_POINTS = {
    "torch reference being computed": "reference",
    "export being validated": "validate:export",
    "ort_optimize being written": "stage:ort_optimize",
    "report being published": "publish",
}


def _start_paused(cmd: list[str], env: dict, point: str, folder: Path, **popen) -> subprocess.Popen:
    """Start ``cmd`` and return once it waits at ``point`` (bounded: 120 s, or it exits first and we fail)."""
    hooks = Path(__file__).parent / "hooks"
    env = {**env, "WORKBENCH_TEST_PAUSE_AT": f"{point}={folder}", "PYTHONPATH": f"{hooks}{os.pathsep}{env.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(cmd, env=env, **popen)
    deadline = time.monotonic() + 120
    while not (folder / f"{point}.reached").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached {point!r} (exit code {proc.poll()})")
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_interrupted_run_leaves_old_report_and_rerun_passes(project, point, tmp_path):
    from workbench.store.cache import Cache

    path = _write(project, "kill", TEXT_MODEL + DATA.replace("max_len: 40", "max_len: 120") % 400 + INT8_STAGES)
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 0
    report = project / "reports" / "kill"
    before = (report / "metrics.json").read_text()
    env = {**os.environ, "PYTHONPATH": str(Path(task.__file__).parent)}
    cmd = [sys.executable, "-m", "workbench", "run", str(path), "--quiet", "--force", "--no-bench"]
    signals = tmp_path / "signals"
    signals.mkdir()
    proc = _start_paused(cmd, env, KILL_POINTS[point], signals, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache_dir = project / ".workbench-cache"
    in_progress = _hidden(cache_dir)  # what the killed run was in the middle of writing
    if point == "report being published":
        assert _hidden(report.parent, ".kill.new-"), "the new report folder should be half-way"
    else:
        assert in_progress, "a cache entry should be half-way"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert (report / "metrics.json").read_text() == before
    cache = Cache(cache_dir)
    entries = [p.name for p in cache.folder.iterdir() if not p.name.startswith(".")]
    assert all(cache.get(name) is not None for name in entries), "a complete entry failed its hash check"
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 0
    assert json.loads((report / "metrics.json").read_text())["verdict"] == "passed"
    assert _hidden(report.parent, ".kill.") == {".kill.lock"}
    record("kill points survived")


def test_concurrent_runs_serialize_and_leave_one_complete_report(project, tmp_path):
    """The first run is held inside the lock; the second must wait for it, then both finish."""
    path = _write(project, "c", TEXT_MODEL + DATA % 60 + "stages:\n  - export: {}\n  - simplify: {}\n")
    env = {**os.environ, "PYTHONPATH": str(Path(task.__file__).parent)}
    cmd = [sys.executable, "-m", "workbench", "run", str(path), "--quiet", "--no-bench", "--force"]
    signals = tmp_path / "signals"
    signals.mkdir()
    first = _start_paused(cmd, env, "locked", signals, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(tmp_path / "second.err", "w") as err:
        second = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        deadline = time.monotonic() + 60
        while "waiting for another run" not in (tmp_path / "second.err").read_text():
            assert second.poll() is None and time.monotonic() < deadline, "the second run did not wait for the lock"
            time.sleep(0.02)
        (signals / "locked.go").write_text("")
        outs = first.communicate(timeout=300)
        assert second.wait(timeout=300) == 0 and first.returncode == 0, outs
    assert "waiting for another run" not in outs[1]
    report = project / "reports" / "c"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["verdict"] == "passed" and [s["stage"] for s in metrics["stages"]] == ["export", "simplify"]
    from workbench.store.files import file_sha256

    for stage in metrics["stages"]:
        assert file_sha256(report / stage["artifact"]["file"]) == stage["artifact"]["sha256"]
    assert sorted(p.name for p in report.parent.iterdir()) == [".c.lock", "c"]
