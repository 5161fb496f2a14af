"""Extending the workbench from outside the package: a stage with a new precision and its own facts model, and an
engine with a tuning hook, registered from this file only, show up in a real run's report, terminal, compare and
metrics.json (which validates against the printed schema). Also: what stays out of timing/ and render/."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from tiny_models import TINY_LSTM, save_tiny_lstm

from workbench.cli import main
from workbench.precision import PRECISIONS, Accept, Precision, register
from workbench.results import Run
from workbench.runtimes import ENGINES, EngineParams, Runner, Tuner, engine
from workbench.runtimes import onnxruntime as ort_engine
from workbench.stages import REGISTRY, Facts, Params, Source, stage

PACKAGE = Path(__file__).resolve().parent.parent / "workbench"


class RoundParams(Params):
    mantissa_bits: int = 10  # fp16's


class RoundFacts(Facts):
    tensors: int
    largest_change: float

    def lines(self) -> list[str]:
        return [f"rounded {self.tensors} weight tensors to {self.largest_change:.1e} at most"]


class RoundingRunner(Runner):
    """onnxruntime under another engine name, so its tuning hook is this file's."""

    engine = "ort-threads"

    def __init__(self, inner: Runner):
        self.inner, self.name, self.precision, self.input_names = inner, inner.name, inner.precision, inner.input_names

    def infer(self, feeds):
        return self.inner.infer(feeds)


@pytest.fixture
def extensions():
    """A precision, a stage and an engine, each registered the way a user would, and removed afterwards."""
    rounded = register(Precision("fp16-weights", Accept(max_abs_error=5e-2, min_agreement=0.95)))

    @stage("round_weights", params=RoundParams, facts=RoundFacts, precision=rounded)
    def round_weights(source: Source, params: RoundParams, dst: Path) -> RoundFacts:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(source.onnx))
        largest, count = 0.0, 0
        for init in model.graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) >= 2:
                array = numpy_helper.to_array(init)
                rounded_array = array.astype(np.float16).astype(np.float32)
                largest = max(largest, float(np.abs(array - rounded_array).max()))
                init.CopyFrom(numpy_helper.from_array(rounded_array, init.name))
                count += 1
        onnx.save(model, str(dst))
        return RoundFacts(tensors=count, largest_change=largest)

    def load_with(path: Path, params: EngineParams, threads: int, options: dict) -> Runner:
        return RoundingRunner(ort_engine.load_file(path, options.get("threads", threads)))

    grid = lambda threads: [{"threads": threads}, {"threads": 1}]
    label = lambda options: f"{options['threads']} threads"

    @engine("ort-threads", tuner=Tuner(grid, load_with, label))
    def load(path: Path, params: EngineParams, threads: int) -> Runner:
        return load_with(path, params, threads, {})

    yield
    del REGISTRY["round_weights"], ENGINES["ort-threads"], PRECISIONS["fp16-weights"]


RECIPE = TINY_LSTM + """\
data: {synthetic: {size: 40, seed: 1, min_len: 3, max_len: 12}, batch_size: 8, min_samples: 8}
runtimes: [ort-threads]
bench: {budget_seconds: 0.05, latency_lengths: [4], throughput: {batch: 2, length: 4}, chart_lengths: [2, 4]}
stages:
  - export: {}
"""


def test_a_stage_with_a_new_precision_and_an_engine_with_a_tuning_hook_join_a_run(
    project, extensions, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "200")
    save_tiny_lstm(project)
    (project / "plain.yaml").write_text(RECIPE)
    (project / "rounded.yaml").write_text(RECIPE + "  - round_weights: {}\n")
    assert main(["run", str(project / "plain.yaml"), "--quiet"]) == 0
    assert main(["run", str(project / "rounded.yaml")]) == 0
    terminal = capsys.readouterr().out
    assert "ort-threads:round_weights" in terminal and "round_weights on ort-threads" in terminal

    folder = project / "reports" / "rounded"
    text = (folder / "metrics.json").read_text()
    assert main(["schema"]) == 0
    jsonschema.validate(json.loads(text), json.loads(capsys.readouterr().out))
    run = Run.load(text)
    record = run.record("round_weights")
    assert record.precision.name == "fp16-weights" and isinstance(record.facts, RoundFacts)
    import onnx

    exported = onnx.load(str(folder / "export.onnx"))
    matrices = [i for i in exported.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 2]
    assert record.facts.tensors == len(matrices) >= 3 and 0 < record.facts.largest_change < 1e-2
    (check,) = record.checks
    assert check.check.accept.max_abs_error == 5e-2 and check.passed  # the new precision's own default rule
    (tuning,) = run.bench.tunings
    assert tuning.engine == "ort-threads" and [t.label for t in tuning.trials] == ["2 threads", "1 threads"]
    session = folder / "round_weights.onnx.session.json"
    assert tuning.load.quiet or tuning.chosen == 0  # nothing is chosen from a busy stretch
    report = (folder / "report.md").read_text()
    if run.bench.quiet:  # a choice is saved only from a run quiet throughout
        saved = json.loads(session.read_text())
        assert saved["engine"] == "ort-threads" and saved["options"] == tuning.best.options
    else:
        assert not session.exists()
    assert ("saved beside the artifact as `round_weights.onnx.session.json`" in report) == session.exists()
    # a case timed while busy, the tuning stretch quiet: nothing is saved, and the report must not say it was
    from workbench.render import speed

    busy_case = run.bench.loads[0].model_copy(update={"quiet": False})
    busy = run.bench.model_copy(update={"loads": (busy_case, *run.bench.loads[1:])})
    quiet_tuning = tuning.model_copy(update={"load": tuning.load.model_copy(update={"quiet": True})})
    assert "not saved, since the machine was busy" in "\n".join(speed._tuning(busy, quiet_tuning))

    assert "## round_weights" in report and "- precision: fp16-weights" in report
    assert f"- rounded {len(matrices)} weight tensors to" in report and "fp16-weights: |diff| <= 0.05" in report
    assert "### Tuning (ort-threads:round_weights, b1 l4)" in report and "| 1 threads |" in report

    assert main(["compare", str(project / "reports" / "plain"), str(folder), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any(r.startswith("ort-threads:round_weights,bytes,-,") for r in rows)


def _string_literals(path: Path) -> set[str]:
    """Every string constant of a module except docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return names


@pytest.mark.parametrize("folder", ["timing", "render"])
def test_timing_and_render_name_no_engine(folder):
    """What only one engine can do is a hook on that engine: nothing under timing/ or render/ imports an engine's
    package or names an engine in a string."""
    engines = set(ENGINES) | {"pytorch"}  # the registered engines and the references' engine
    modules = sorted((PACKAGE / folder).glob("*.py"))
    assert modules
    for module in modules:
        imported = _imports(module)
        assert not imported & {"onnxruntime", "openvino", "torch", "workbench.runtimes.onnxruntime",
                               "workbench.runtimes.openvino", "workbench.runtimes.torch"}, (module, imported)
        named = {s for s in _string_literals(module) if s.lower() in engines}
        assert not named, f"{module.name} names engines {named}"


def test_the_readme_layout_names_every_module():
    """The README's Layout section agrees with ``ls workbench/``: every module and folder is named there, and
    everything named there exists."""
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    present = {p.name for p in PACKAGE.iterdir() if not p.name.startswith("_") and p.name != "__pycache__"}
    for sub in (p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        present |= {f"{sub.name}/{m.name}" for m in sub.glob("*.py") if not m.name.startswith("_")}
    for name in present:
        short = name.split("/")[-1]
        assert f"`{name}" in layout or f"`{short}" in layout, f"README Layout does not name {name}"
    words = {w.rstrip(",.;:)").strip("`") for w in layout.split() if w.startswith("`")}
    modules = {w for w in words if w.endswith(".py") and "/" not in w}  # e.g. `pipeline.py`
    folders = {w.rstrip("/") for w in words if w.endswith("/") and w.count("/") == 1}  # e.g. `stages/`
    outside = {"task.py", "recipes", "tests", "benchmarks", "reports"}  # named beside the package
    for name in (modules | folders) - outside:
        assert any(p == name or p.endswith("/" + name) for p in present), f"README names {name}, not in workbench/"
