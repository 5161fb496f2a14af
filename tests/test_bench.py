"""The measuring machinery on tiny real models; no test asserts a wall-clock speed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import task
from workbench import bench, tune
from workbench.cli import main

TINY_BENCH = (
    "bench: {budget_seconds: 0.05, latency_lengths: [8, 16], throughput: {batch: 4, length: 16}, "
    "chart_lengths: [4, 16]}\n"
)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    model = task.TextClassifier(vocab_size=50, embed_dim=8, hidden_dim=16)
    torch.save(model.state_dict(), folder / "tiny.pt")
    return model.eval(), Path(task.convert(folder / "tiny.pt", folder / "tiny.onnx"))


def test_measure_times_every_contender_and_reports_spread(tiny_onnx):
    model, path = tiny_onnx
    contenders = [bench.torch_fp32(model, 1), bench.torch_int8(model, 1), bench.onnx_file("onnx", path, 1)]
    case = bench.Case("b2_l8", 2, 8)
    timings = bench.measure(contenders, case, bench.inputs(case, vocab_size=50, batch_first=False), budget_s=0.2)
    assert [t.contender for t in timings] == ["pytorch fp32", "pytorch int8", "onnx"]
    for t in timings:
        assert t.runs >= bench.BLOCKS * bench.MIN_BLOCK_RUNS
        assert 0 < t.min_ms <= t.median_ms <= t.p90_ms <= t.max_ms and t.iqr_ms >= 0
        assert t.samples_per_s == pytest.approx(2 / (t.median_ms / 1000))
    ratios = bench.speedups(timings)
    by_name = {t.contender: t.median_ms for t in timings}
    assert ratios[("onnx", "b2_l8")] == by_name["pytorch fp32"] / by_name["onnx"]
    assert ratios[("pytorch fp32", "b2_l8")] == 1.0


def test_inputs_are_seeded_and_laid_out():
    case = bench.Case("c", 3, 5)
    a = bench.inputs(case, vocab_size=10, batch_first=False)
    assert a.shape == (5, 3) and a.max() < 10
    assert np.array_equal(a, bench.inputs(case, vocab_size=10, batch_first=False))
    assert np.array_equal(bench.inputs(case, vocab_size=10, batch_first=True), a.T)


def test_tuning_keeps_identical_outputs_and_saves_a_loadable_config(tiny_onnx, tmp_path):
    _, path = tiny_onnx
    result = tune.tune(path, bench.Case("b1_l16", 1, 16), threads=2, vocab_size=50, batch_first=False, budget_s=0.1)
    assert len(result.trials) == len(tune.grid(2)) == 8
    assert result.best.identical and result.best.median_ms == min(t.median_ms for t in result.trials if t.identical)
    assert result.gain == result.default.median_ms / result.best.median_ms >= 1.0
    copy = tmp_path / "m.onnx"
    shutil.copy(path, copy)
    saved = tune.save(result.to_dict(), copy)
    assert saved.name == "m.onnx.session.json"
    assert json.loads(saved.read_text())["session_options"] == result.best.options
    session = tune.tuned_session(copy)
    ids = np.array([[1], [2], [3]])
    assert np.array_equal(session.run(None, {"text": ids})[0], bench.onnx_session(path, 2).run(None, {"text": ids})[0])


def _recipe(project: Path, name: str, stages: str) -> Path:
    path = project / f"{name}.yaml"
    path.write_text(
        "model: {class: task:TextClassifier, weights: model.pt}\n"
        "data: {synthetic: {size: 40, seed: 2, min_len: 4, max_len: 24}}\n" + TINY_BENCH + stages
    )
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    project = tmp_path_factory.mktemp("runs")
    for name in ("task.py", "model.pt"):
        shutil.copy(Path(task.__file__).parent / name, project / name)
    fp32 = _recipe(project, "fp32", "stages:\n  - export: {}\n")
    int8 = _recipe(
        project,
        "int8",
        "stages:\n  - export: {}\n  - simplify: {}\n  - quantize_dynamic: {op_types: [LSTM, Gemm, Gather]}\n",
    )
    assert main(["run", str(fp32), "--quiet"]) == 0
    assert main(["run", str(int8), "--quiet"]) == 0
    return project


def test_run_reports_benchmarks_charts_and_tuning(two_runs):
    folder = two_runs / "reports" / "int8"
    metrics = json.loads((folder / "metrics.json").read_text())
    figures = metrics["bench"]
    contenders = {t["contender"] for t in figures["timings"]}
    assert contenders == {"pytorch fp32", "pytorch int8", "export", "simplify", "quantize_dynamic"}
    assert {t["case"] for t in figures["timings"]} == {"b1_l8", "b1_l16", "b4_l16"}
    for t in figures["timings"]:
        ratio = figures["speedup_vs_pytorch_fp32"][t["contender"]][t["case"]]
        base = next(b for b in figures["timings"] if b["contender"] == "pytorch fp32" and b["case"] == t["case"])
        assert ratio == pytest.approx(base["median_ms"] / t["median_ms"])
    assert {t["contender"] for t in figures["by_length"]} == {
        "pytorch fp32",
        "pytorch int8",
        "onnx fp32 (export)",
        "onnx int8 (quantize_dynamic)",
    }
    assert figures["tuning"]["stage"] == "quantize_dynamic"
    assert (folder / "quantize_dynamic.onnx.session.json").is_file()
    assert "DynamicQuantizeLSTM" in figures["profile"]["op_share"]
    assert sum(figures["profile"]["op_share"].values()) == pytest.approx(1.0)
    report = (folder / "report.md").read_text()
    for chart in ("size_latency.png", "latency_by_length.png"):
        png = (folder / chart).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
        assert f"]({chart})" in report
    assert "## Speed" in report and "### Session tuning" in report and "### Where the time goes" in report


def test_no_bench_says_so(two_runs):
    assert main(["run", str(two_runs / "fp32.yaml"), "--quiet", "--no-bench"]) == 0
    folder = two_runs / "reports" / "fp32"
    assert json.loads((folder / "metrics.json").read_text())["bench"] is None
    assert "Not measured in this run" in (folder / "report.md").read_text()
    assert not (folder / "size_latency.png").exists()
    assert main(["run", str(two_runs / "fp32.yaml"), "--quiet"]) == 0  # benchmarks back for the next test


def test_compare_two_runs(two_runs, capsys):
    from workbench import compare

    header, rows = compare.table([two_runs / "reports" / "fp32", two_runs / "reports" / "int8"])
    assert header == ["stage", "figure", "fp32", "int8", "change fp32 -> int8"]
    cells = {(r[0], r[1]): r for r in rows}
    assert cells[("quantize_dynamic", "share")][2] == "-" and cells[("quantize_dynamic", "share")][3].endswith("%")
    assert cells[("export", "bytes")][4] == "+0.0%"
    assert cells[("export", "latency b1_l16")][2].endswith(" ms")
    assert main(["compare", str(two_runs / "reports" / "fp32"), str(two_runs / "reports" / "int8")]) == 0
    assert "quantize_dynamic" in capsys.readouterr().out
    assert main(["compare", str(two_runs / "nowhere")]) == 2


def test_bench_command_on_files(two_runs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich folds long names in a narrow terminal
    folder = two_runs / "reports" / "int8"
    assert (
        main(
            [
                "bench",
                str(folder / "export.onnx"),
                str(folder / "quantize_dynamic.onnx"),
                "--budget",
                "0.05",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "x: export.onnx's median" in out and "quantize_dynamic.onnx" in out and "1.00x" in out
    assert main(["bench", str(folder / "quantize_dynamic.onnx"), "--recipe", str(two_runs / "int8.yaml")]) == 0
    assert "pytorch int8" in capsys.readouterr().out
    (two_runs / "junk.onnx").write_bytes(b"junk")
    assert main(["bench", str(two_runs / "junk.onnx")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
