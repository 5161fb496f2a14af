"""The measuring machinery on tiny real models and real runners; no test asserts a wall-clock speed of the product."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import task
from workbench.cli import main
from workbench.errors import EngineRefused, InputError
from workbench.feeds import FeedSpec, InputSpec
from workbench.results import Case, Run, Trial
from workbench.runtimes import ENGINES, REFERENCE, TORCH_INT8, Runner, load_tuned
from workbench.runtimes import onnxruntime as ort_engine
from workbench.runtimes import torch as torch_runners
from workbench.timing import load, measure, tune

TINY_BENCH = (
    "bench: {budget_seconds: 0.05, latency_lengths: [8, 16], throughput: {batch: 4, length: 16}, "
    "chart_lengths: [4, 16]}\n"
)
TEXT = FeedSpec((InputSpec(name="text"),), vocab_size=50)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    model = task.TextClassifier(vocab_size=50, embed_dim=8, hidden_dim=16)
    torch.save(model.state_dict(), folder / "tiny.pt")
    return model.eval(), Path(task.convert(folder / "tiny.pt", folder / "tiny.onnx"))


class Sleeper(Runner):
    """A runner whose cost is known in advance: it sleeps ``seconds`` per call."""

    engine = "sleep"
    precision = "none"
    input_names = ("text",)

    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds

    def infer(self, feeds):
        time.sleep(self.seconds)
        return {"logits": np.zeros((1, 2), np.float32)}


def test_measure_times_every_contender_and_reports_spread(tiny_onnx):
    model, path = tiny_onnx
    names = (model, ("text",), "logits")
    runners = [
        torch_runners.fp32(REFERENCE, *names),
        torch_runners.dynamic_int8(TORCH_INT8, *names),
        ort_engine.load_file(path, 1, name="onnx"),
    ]
    case = Case(batch=2, length=8)
    timings = measure.measure(runners, case, TEXT.random(2, 8), budget_s=0.2)
    assert [t.contender for t in timings] == [REFERENCE, TORCH_INT8, "onnx"]
    for t in timings:
        assert t.runs >= measure.BLOCKS * measure.MIN_BLOCK_RUNS
        assert 0 < t.min_ms <= t.median_ms <= t.p90_ms <= t.max_ms and t.iqr_ms >= 0
        assert len(t.block_medians_ms) >= measure.BLOCKS and t.min_ms <= min(t.block_medians_ms)


def test_speedups_reflect_known_costs():
    """Two runners whose costs are known (sleeps of 4 ms and 2 ms): the measured ratio is about 2, and the
    medians are at least the sleeps. An independent fact, not the formula restated."""
    slow, fast = Sleeper("slow", 0.004), Sleeper("fast", 0.002)
    case = Case(batch=1, length=4)
    with load.Monitor() as monitor:
        timings = measure.measure([slow, fast], case, TEXT.random(1, 4), budget_s=0.3)
    medians = {t.contender: t.median_ms for t in timings}
    assert medians["slow"] >= 4.0 and medians["fast"] >= 2.0
    ratio = medians["slow"] / medians["fast"]
    if not 1.5 < ratio < 2.5 and monitor.report is not None and monitor.report.busy:
        pytest.skip(f"a late wake-up from sleep on a busy machine ({monitor.report.reason}): {medians}")
    assert 1.5 < ratio < 2.5, medians


class Refusing(Runner):
    """An engine that cannot take the inputs (an ONNX file past its position table, say)."""

    engine = "refuse"
    precision = "none"
    input_names = ("text",)
    name = "refusing.onnx"

    def infer(self, feeds):
        try:
            raise ValueError("indices element out of data bounds, idx=300\nmore of the engine's words")
        except ValueError as exc:  # as the engines wrap their own call
            raise EngineRefused("the engine could not run refusing.onnx") from exc


class Broken(Sleeper):
    """A bug in the workbench's own runner code, not an engine's refusal."""

    def infer(self, feeds):
        return {"logits": feeds["txet"]}


def test_an_engine_that_refuses_the_timed_inputs_is_one_line_naming_the_row_and_shapes():
    with pytest.raises(InputError) as refused:
        measure.measure([Refusing()], Case(batch=1, length=300), TEXT.random(1, 300), budget_s=0.05)
    assert str(refused.value).startswith(
        "refusing.onnx failed while timing b1 l300 on inputs text [300, 1]: ValueError: indices element out of data "
        "bounds, idx=300 more of the engine's words"
    ) and "model.max_length bounds every timed length" in str(refused.value)
    with pytest.raises(InputError, match=r"refusing.onnx failed while checking that tuned options give identical"):
        tune.identical_to_first([Refusing()], TEXT)  # the default option set must run
    assert tune.identical_to_first([Sleeper("default", 0.0), Refusing()], TEXT) == [True, None]  # others left out
    with pytest.raises(KeyError, match="txet"):  # our own bug keeps its traceback, not the engine's hint
        measure.measure([Broken("broken", 0.0)], Case(batch=1, length=4), TEXT.random(1, 4), budget_s=0.05)


def test_inputs_are_seeded_and_laid_out():
    feed = FeedSpec(
        (InputSpec(name="ids", axes=("sequence", "batch")), InputSpec(name="m", feed="mask", axes=("batch", "sequence"))),
        vocab_size=10,
    )
    a = feed.random(3, 5)
    assert a["ids"].shape == (5, 3) and a["ids"].max() < 10 and a["m"].shape == (3, 5) and a["m"].all()
    assert all(np.array_equal(a[k], feed.random(3, 5)[k]) for k in a)
    assert not np.array_equal(a["ids"], feed.random(3, 5, seed=1)["ids"])


def test_tuning_saves_a_loadable_config_that_reproduces_the_default(tiny_onnx, tmp_path):
    _, path = tiny_onnx
    engine = ENGINES["onnxruntime"]
    grid = engine.tuner.grid(2)
    result = tune.tune(engine, engine.params(), path, "tiny", Case(batch=1, length=16), TEXT, threads=2, budget_s=0.1)
    assert len(result.trials) == len(grid) == 8 and result.trials[0].options == grid[0]
    assert result.best.identical and result.best in result.trials
    copy = tmp_path / "m.onnx"
    shutil.copy(path, copy)
    busy = result.load.model_copy(update={"quiet": False})
    assert tune.save(result.model_copy(update={"load": busy}), engine.params(), copy) is None  # never under load
    quiet = result.load.model_copy(update={"quiet": True})
    saved = tune.save(result.model_copy(update={"load": quiet}), engine.params(), copy)
    assert saved is not None and saved.name == "m.onnx.session.json"
    assert json.loads(saved.read_text())["options"] == result.best.options
    runner = load_tuned(copy)
    ids = {"text": np.array([[1], [2], [3]])}
    assert np.array_equal(runner.first_output(ids), ort_engine.load_file(path, 2).first_output(ids))


def test_a_faster_trial_whose_outputs_differ_is_never_chosen():
    def trial(n: int, ms: float, identical: bool) -> Trial:
        return Trial(options={"n": n}, label=str(n), median_ms=ms, identical=identical)

    default, faster_but_different, slower_same, second_best_same = (
        trial(0, 5.0, True), trial(1, 1.0, False), trial(2, 6.0, True), trial(3, 4.0, True)
    )
    assert tune.choose([default, faster_but_different, slower_same, second_best_same]) == 3
    assert tune.choose([default, faster_but_different]) == 0


def test_outputs_that_differ_are_flagged(tiny_onnx):
    """The identity check tuning relies on, on real runners: the same file twice is identical; the same graph with
    one weight changed is not."""
    import onnx

    _, path = tiny_onnx
    proto = onnx.load(str(path))
    init = next(i for i in proto.graph.initializer if list(i.dims) == [2, 16])  # the classifier's weight
    init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) + 1e-3, init.name))
    other = path.with_name("other.onnx")
    onnx.save(proto, str(other))
    runners = [ort_engine.load_file(p, 1) for p in (path, path, other)]
    assert tune.identical_to_first(runners, TEXT) == [True, True, False]


def _recipe(project: Path, name: str, stages: str, extra: str = "") -> Path:
    path = project / f"{name}.yaml"
    path.write_text(
        "model: {class: task:TextClassifier, weights: model.pt}\n"
        "data: {synthetic: {size: 40, seed: 2, min_len: 4, max_len: 24}, min_samples: 40}\n" + TINY_BENCH + extra + stages
    )
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two benchmarked runs, read (never changed) by the tests below."""
    project = tmp_path_factory.mktemp("runs")
    for name in ("task.py", "model.pt"):
        shutil.copy(Path(task.__file__).parent / name, project / name)
    fp32 = _recipe(project, "fp32", "stages:\n  - export: {}\n")
    int8 = _recipe(
        project,
        "int8",
        "stages:\n  - export: {}\n  - simplify: {}\n  - quantize_dynamic: {op_types: [LSTM, Gemm, Gather]}\n",
        extra="runtimes: [onnxruntime, openvino]\n",
    )
    assert main(["run", str(fp32), "--quiet"]) == 0
    assert main(["run", str(int8), "--quiet"]) == 0
    return project


def test_run_reports_benchmarks_charts_and_tuning(two_runs):
    folder = two_runs / "reports" / "int8"
    figures = Run.load((folder / "metrics.json").read_text()).bench
    stages = ("export", "simplify", "quantize_dynamic")
    rows = {f"{engine}:{stage}" for engine in ("onnxruntime", "openvino") for stage in stages}
    assert {t.contender for t in figures.timings} == {REFERENCE, TORCH_INT8} | rows
    assert {t.case.name for t in figures.timings} == {"b1_l8", "b1_l16", "b4_l16"}
    ran = {c.row: c.ran_as for c in figures.contenders}
    assert ran["onnxruntime:quantize_dynamic"].startswith("int8: DynamicQuantizeLSTM")
    assert ran["openvino:quantize_dynamic"].startswith("f32: RNNSeq")
    assert ran[TORCH_INT8] == "int8 dynamic: Linear, LSTM"
    assert set(figures.chart_rows) == {REFERENCE, TORCH_INT8, "onnxruntime:export", "onnxruntime:quantize_dynamic"}
    assert [t.row for t in figures.tunings] == ["onnxruntime:quantize_dynamic", "openvino:quantize_dynamic"]
    session = folder / "quantize_dynamic.onnx.session.json"
    if figures.quiet:  # a choice is saved only from a run quiet throughout
        assert json.loads(session.read_text())["engine"] in ("onnxruntime", "openvino")
    else:
        assert not session.exists()
    assert all(t.chosen == 0 or t.load.quiet for t in figures.tunings)  # nothing chosen from a busy stretch
    shares = {p.engine: p.op_share for p in figures.profiles}
    assert "DynamicQuantizeLSTM" in shares["onnxruntime"] and "LSTMSequence" in shares["openvino"]
    assert all(sum(share.values()) == pytest.approx(1.0) for share in shares.values())
    report = (folder / "report.md").read_text()
    for chart in ("size_latency.png", "latency_by_length.png"):
        png = (folder / chart).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
        assert f"]({chart})" in report
    assert "## Speed" in report and "### Tuning" in report and "### Where the time goes" in report
    # the leader as the report ranks rows: by the median of their block medians (an alias row shares its blocks)
    fastest = min((t for t in figures.timings if t.case.name == "b1_l16"), key=lambda t: np.median(t.block_medians_ms))
    found = next(f for f in figures.fastest if f.case.name == "b1_l16")
    if found.winner is not None:  # claimed: its lead over the runner-up excludes a tie
        assert found.winner == fastest.contender
        assert f"- fastest at b1 l16: **{fastest.contender}**" in report
    else:  # on a noisy machine the interval may not exclude a tie: the report names both
        assert found.tied[0] == fastest.contender and len(found.tied) == 2
        assert f"- fastest at b1 l16: not distinguishable between {', '.join(found.tied)}" in report
    assert not figures.cached


def test_no_bench_says_so(tmp_path):
    for name in ("task.py", "model.pt"):
        shutil.copy(Path(task.__file__).parent / name, tmp_path / name)
    path = _recipe(tmp_path, "plain", "stages:\n  - export: {}\n")
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 0
    folder = tmp_path / "reports" / "plain"
    assert json.loads((folder / "metrics.json").read_text())["bench"] is None
    assert "Not measured in this run" in (folder / "report.md").read_text()
    assert not (folder / "size_latency.png").exists()


def test_compare_two_runs(two_runs, capsys, monkeypatch):
    from workbench.commands import compare

    monkeypatch.setenv("COLUMNS", "250")  # rich folds long names in a narrow terminal
    header, rows, notes = compare.table([two_runs / "reports" / "fp32", two_runs / "reports" / "int8"])
    assert header == ["row", "figure", "fp32", "int8", "change fp32 -> int8"]
    cells = {(r[0], r[1]): r for r in rows}
    row = "onnxruntime:quantize_dynamic"
    assert cells[(row, "of export")][2] == "-" and cells[(row, "of export")][3].endswith("%")
    assert cells[("onnxruntime:export", "bytes")][4] == "x1.00"
    fp32_ms, int8_ms = (float(cells[("onnxruntime:export", "latency ms")][i]) for i in (2, 3))
    # the change is computed from the figures, the cells are rounded to 2 decimals: compare within that rounding
    assert float(cells[("onnxruntime:export", "latency ms")][4][1:]) == pytest.approx(int8_ms / fp32_ms, rel=0.02, abs=0.011)
    fp32_x, int8_x = (float(cells[("onnxruntime:export", "x PyTorch fp32")][i].rstrip("x")) for i in (2, 3))
    ratio_of_ratios = float(cells[("onnxruntime:export", "x PyTorch fp32")][4][1:])
    assert ratio_of_ratios == pytest.approx(int8_x / fp32_x, rel=0.01, abs=0.011)  # ratios compared as ratios
    assert ("openvino:export", "bytes") in cells
    assert any(n.startswith("latency ms: median latency at the headline case (b1 l16)") for n in notes)
    assert main(["compare", str(two_runs / "reports" / "fp32"), str(two_runs / "reports" / "int8")]) == 0
    assert "quantize_dynamic" in capsys.readouterr().out
    assert main(["compare", str(two_runs / "nowhere")]) == 2


def test_bench_command_on_files(two_runs, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "250")  # rich folds long names in a narrow terminal
    folder = two_runs / "reports" / "int8"
    files = [str(folder / "export.onnx"), str(folder / "quantize_dynamic.onnx")]
    assert main(["bench", *files, "--budget", "0.05", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "x: export.onnx's median" in out and "quantize_dynamic.onnx" in out
    assert main(["bench", files[1], "--recipe", str(two_runs / "int8.yaml"), "--budget", "0.05"]) == 0
    assert TORCH_INT8 in capsys.readouterr().out
    assert main(["bench", files[1], "--runtime", "openvino", "--budget", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "openvino:quantize_dynamic.onnx" in out and "RNNSeq" in out
    assert main(["bench", files[1], "--runtime", "tensorrt"]) == 2
    assert "unknown engine; known engines: onnxruntime, openvino" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"junk")  # not in the shared fixture's folder
    assert main(["bench", str(tmp_path / "junk.onnx")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
