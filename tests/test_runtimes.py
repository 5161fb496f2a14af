"""Engines: the runner shape on real engines, and an engine registered from this file joining a real run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import task
from workbench.cli import main
from workbench.ops import INT8_OPS
from workbench.runtimes import ENGINES, EngineParams, NotApplicable, Runner, engine
from workbench.runtimes import onnxruntime as ort_engine
from workbench.runtimes import openvino as ov_engine
from workbench.runtimes import torch as torch_runners


class ReferenceRunner(Runner):
    """onnx's own reference evaluator (pure numpy): slow, but a real, independent ONNX engine."""

    engine = "onnx-reference"
    precision = "fp64/fp32 numpy (onnx.reference)"

    def __init__(self, path: Path):
        from onnx.reference import ReferenceEvaluator

        self.session = ReferenceEvaluator(str(path))
        self.name = f"onnx-reference:{path.stem}"
        self.input_names = tuple(self.session.input_names)

    def infer(self, feeds):
        return dict(zip(self.session.output_names, self.session.run(None, feeds)))


class ReferenceParams(EngineParams):
    refuse_int8: bool = True


@pytest.fixture
def reference_engine():
    """Registered from the test file, the way a user adds an engine: one loader, one decorator."""

    @engine("onnx-reference", params=ReferenceParams)
    def load(path: Path, params: EngineParams, threads: int) -> Runner:
        import onnx

        ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
        if params.refuse_int8 and ops & INT8_OPS:
            raise NotApplicable(
                f"the reference evaluator is not asked to run int8 ops {sorted(ops & INT8_OPS)}"
            )
        return ReferenceRunner(path)

    yield ENGINES["onnx-reference"]
    del ENGINES["onnx-reference"]


def test_a_registered_engine_is_validated_and_timed_in_a_run(project, reference_engine):
    torch.manual_seed(3)
    torch.save(task.TextClassifier(vocab_size=120, embed_dim=8, hidden_dim=8).state_dict(), project / "tiny.pt")
    path = project / "toy.yaml"
    path.write_text(
        "model:\n  class: task:TextClassifier\n  weights: tiny.pt\n  kwargs: {vocab_size: 120, embed_dim: 8, hidden_dim: 8}\n"
        "  vocab_size: 120\n"
        "data: {synthetic: {size: 24, seed: 1, min_len: 3, max_len: 12}, batch_size: 8, min_samples: 24}\n"
        "runtimes: [onnxruntime, onnx-reference]\n"
        "bench: {budget_seconds: 0.02, latency_lengths: [4], throughput: {batch: 2, length: 4}, chart_lengths: [2, 4], "
        "tune: false}\n"
        "stages:\n  - export: {}\n  - quantize_dynamic: {op_types: [LSTM, Gemm], accept: {min_agreement: 0.5}}\n"
    )
    assert main(["run", str(path), "--quiet"]) == 0
    metrics = json.loads((project / "reports" / "toy" / "metrics.json").read_text())
    export, quant = metrics["stages"]
    rows = {e["row"]: e for e in export["checks"]}
    ref = rows["onnx-reference:export"]
    assert ref["precision"] == "fp64/fp32 numpy (onnx.reference)" and ref["passed"]
    assert ref["check"]["comparison"]["max_excess"] <= 1e-5 and ref["check"]["comparison"]["agreement"] == 1.0
    refused = {e["row"]: e for e in quant["checks"]}["onnx-reference:quantize_dynamic"]
    assert refused["not_applicable"].startswith("the reference evaluator is not asked to run int8 ops")
    assert refused["check"] is None and quant["verdict"] == "passed" and metrics["verdict"] == "passed"
    timed = {t["contender"] for t in metrics["bench"]["timings"]}
    assert "onnx-reference:export" in timed and "onnx-reference:quantize_dynamic" not in timed
    report = (project / "reports" / "toy" / "report.md").read_text()
    assert "| onnx-reference:quantize_dynamic | quantize_dynamic.onnx |" in report and "not applicable" in report
    assert "### Not run or failed on an engine" in report


def test_runners_agree_on_the_committed_model(tmp_path):
    """The same fp32 file on PyTorch, onnxruntime and OpenVINO (f32): one feed dict in, logits by name out."""
    path = Path(task.convert(Path(task.__file__).parent / "model.pt", tmp_path / "m.onnx"))
    module = task.build_model(task.load_state_dict(Path(task.__file__).parent / "model.pt"))
    feeds = {"text": np.random.default_rng(0).integers(0, 1000, size=(30, 4))}
    reference = torch_runners.fp32("pytorch fp32", module, ("text",), "logits").infer(feeds)["logits"]
    for runner in (ort_engine.load_file(path, 2), ENGINES["openvino"].load(path, ov_engine.OpenVinoParams(), 2)):
        out = runner.infer(feeds)
        assert list(out) == ["logits"] and runner.input_names == ("text",)
        assert np.all(np.abs(out["logits"] - reference) <= 1e-5 + 1e-5 * np.abs(reference)), runner.name
    assert runner.precision == "f32: RNNSeq 1, FullyConnected 1"


def test_openvino_says_what_precision_ran(tmp_path):
    """bf16 asked: the runtime graph says bf16, and the logits move by far more than fp32 rounding."""
    path = Path(task.convert(Path(task.__file__).parent / "model.pt", tmp_path / "m.onnx"))
    feeds = {"text": np.random.default_rng(1).integers(0, 1000, size=(64, 2))}
    f32 = ENGINES["openvino"].load(path, ov_engine.OpenVinoParams(), 2)
    bf16 = ENGINES["openvino"].load(path, ov_engine.OpenVinoParams(inference_precision="bf16"), 2)
    assert bf16.precision.startswith("bf16:") and "RNNSeq" in bf16.precision
    assert np.abs(f32.first_output(feeds) - bf16.first_output(feeds)).max() > 1e-3


def test_torch_int8_quantizes_the_module_types_present():
    from workbench.zoo import GRUClassifier

    gru = torch_runners.dynamic_int8("q", GRUClassifier().eval(), ("text",), "logits")
    assert gru.precision == "int8 dynamic: Linear, GRU"
    lstm = torch_runners.dynamic_int8("q", task.TextClassifier().eval(), ("text",), "logits")
    assert lstm.precision == "int8 dynamic: Linear, LSTM"
    assert type(lstm.module.rnn).__module__.startswith("torch.ao.nn.quantized")


def test_a_file_an_engine_refuses_is_not_applicable(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(NotApplicable, match="onnxruntime cannot load this model"):
        ort_engine.load_file(bad, 1)
    with pytest.raises(NotApplicable, match="OpenVINO refused this model"):
        ENGINES["openvino"].load(bad, ov_engine.OpenVinoParams(), 1)
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize(
    "model_section, message",
    [
        (  # two inputs declared for a one-input model
            "  inputs: [{name: text}, {name: mask, feed: mask}]\n",
            r"TextClassifier.forward failed on the recipe's declared inputs \(text \[\d+, \d+\], mask \[\d+, \d+\]\): "
            r"TypeError: .*positional argument",
        ),
        (  # ids beyond the model's embedding
            "  vocab_size: 2000\n",
            r"TextClassifier.forward failed .*IndexError: index out of range in self \(check model.inputs, "
            r"model.vocab_size and model.max_length",
        ),
    ],
)
def test_a_recipe_that_does_not_fit_the_model_is_one_line(project, capsys, model_section, message):
    import re

    path = project / "misfit.yaml"
    path.write_text(
        "model:\n  class: task:TextClassifier\n  weights: model.pt\n"
        + model_section
        + "data: {synthetic: {size: 8, seed: 1, max_len: 16}, min_samples: 8}\nstages: [{export: {}}]\n"
    )
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


def test_a_forward_that_returns_a_tuple_is_one_line(project, capsys):
    (project / "tuple_model.py").write_text(
        "import task\n\nclass Tupled(task.TextClassifier):\n"
        "    def forward(self, text):\n        return super().forward(text), None\n"
    )
    path = project / "tupled.yaml"
    path.write_text(
        "model: {class: tuple_model:Tupled, weights: model.pt}\n"
        "data: {synthetic: {size: 8, seed: 1, max_len: 16}, min_samples: 8}\nstages: [{export: {}}]\n"
    )
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 2
    err = capsys.readouterr().err
    assert "Tupled.forward returned tuple; it must return the logits tensor" in err and err.count("\n") == 1, err
