from __future__ import annotations

from pathlib import Path

import pytest

from workbench import recipe
from workbench.cli import main
from workbench.errors import RecipeError
from workbench.stages import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
GOOD = """\
model:
  class: task:TextClassifier
  weights: model.pt
stages:
  - export: {opset: 17}
  - simplify: {}
  - quantize_dynamic: {weight_type: qint8, op_types: [LSTM, Gemm]}
"""


def _load(tmp_path: Path, text: str) -> recipe.Recipe:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return recipe.load(path)


def test_good_recipe_parses_into_frozen_typed_objects(tmp_path):
    parsed = _load(tmp_path, GOOD)
    assert parsed.name == "r" and parsed.root == tmp_path.resolve()
    assert [s.name for s in parsed.stages] == ["export", "simplify", "quantize_dynamic"]
    assert parsed.stages[2].params.op_types == ("LSTM", "Gemm")
    assert parsed.stages[0].accept.max_abs_error == 1e-5  # fp32 default
    assert parsed.stages[2].accept.min_agreement == 0.995  # int8 default
    with pytest.raises(Exception):
        parsed.stages[2].params.weight_type = "quint8"


SHIPPED = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))


BUILT_FIRST = {"hf"}  # its model folder is made by `python -m workbench.hf_example examples/hf` (tests/test_hf_recipe.py)


def test_the_shipped_recipes_are_the_documented_ones():
    assert SHIPPED == ["bert", "bert_search", "bilstm", "engines", "fp32", "gru", "hf", "int8", "search"]


@pytest.mark.parametrize("name", sorted(set(SHIPPED) - BUILT_FIRST))
def test_shipped_recipes_parse(name):
    parsed = recipe.load(ROOT / "recipes" / f"{name}.yaml")
    assert parsed.root == ROOT and parsed.report_dir == ROOT / "reports" / name
    assert recipe.load(ROOT / "recipes" / f"{name}.yaml").resolve(parsed.model.weights).is_file()


def test_every_registered_stage_and_engine_is_in_a_shipped_recipe():
    from workbench.runtimes import ENGINES

    parsed = [recipe.load(ROOT / "recipes" / f"{name}.yaml") for name in sorted(set(SHIPPED) - BUILT_FIRST)]
    searched = {name for r in parsed if r.settings.search for name in r.settings.search.stage}
    assert {s.name for r in parsed for s in r.stages} | searched == set(REGISTRY)
    assert {e.name for r in parsed for e in r.runtimes} == set(ENGINES)


def test_runtimes_default_to_onnxruntime_and_take_parameters(tmp_path):
    assert [(r.name, r.params.model_dump()) for r in _load(tmp_path, GOOD).runtimes] == [
        (
            "onnxruntime",
            {
                "providers": ("CPUExecutionProvider",),
                "graph_optimization_level": "ORT_ENABLE_ALL",
                "execution_mode": "ORT_SEQUENTIAL",
            },
        )
    ]
    parsed = _load(tmp_path, GOOD + "runtimes: [onnxruntime, {openvino: {inference_precision: bf16}}]\n")
    assert [r.name for r in parsed.runtimes] == ["onnxruntime", "openvino"]
    assert parsed.runtimes[1].params.inference_precision == "bf16"


def test_an_engine_that_is_not_installed_is_one_line_naming_the_install_command(tmp_path, capsys):
    """A registered engine whose package is absent: refused at load, before anything runs (exit 2)."""
    from workbench.runtimes import ENGINES, EngineSpec

    ENGINES["absent"] = EngineSpec(
        "absent",
        ENGINES["openvino"].params,
        ENGINES["openvino"].load,
        "no_such_module_here",
        'pip install -e ".[absent]"',
    )
    try:
        path = tmp_path / "r.yaml"
        path.write_text(GOOD + "runtimes: [onnxruntime, absent]\n")
        assert main(["run", str(path)]) == 2
    finally:
        del ENGINES["absent"]
    err = capsys.readouterr().err
    assert err == (
        f"error: {path}: runtimes[1]: engine 'absent' is not installed; install it with: pip install -e \".[absent]\"\n"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (
            GOOD.replace("weight_type: qint8", "weight_type: int4"),
            r"r.yaml: stages\[2\].quantize_dynamic.weight_type: 'int4' is not allowed: "
            r"Input should be 'qint8' or 'quint8'",
        ),
        (GOOD.replace("{opset: 17}", "{opset: seventeen}"), r"stages\[0\].export.opset: 'seventeen' is not allowed"),
        (
            GOOD.replace("{opset: 17}", "{opset: 99}"),
            r"stages\[0\].export.opset: 99 is not allowed: .*less than or equal to 21",
        ),
        (
            GOOD.replace("{opset: 17}", "{opset: 17, fast: true}"),
            r"stages\[0\].export.fast: unknown key; allowed keys: opset, constant_folding",
        ),
        (
            GOOD.replace("  - simplify: {}\n", "  - simplfy: {}\n"),
            r"stages\[1\]: unknown stage 'simplfy'; known stages: export, ort_optimize, quantize_dynamic, quantize_static, simplify",
        ),
        (GOOD.replace("  weights: model.pt\n", ""), r"model.weights: required key is missing"),
        (
            GOOD.replace("  weights: model.pt\n", "  weights: model.pt\n  wieghts: x\n"),
            r"model.wieghts: unknown key; allowed keys: class, weights, kwargs, inputs, output, vocab_size",
        ),
        (GOOD + "threads: many\n", r"threads: 'many' is not allowed"),
        (GOOD + "bogus: 1\n", r"bogus: unknown key; allowed keys: name, root, reports"),
        (GOOD + "data: {synthetic: {size: 0}}\n", r"data.synthetic.size: 0 is not allowed"),
        (GOOD + "data: {jsonl: a.jsonl, synthetic: {}}\n", r"data: .* give exactly one of 'synthetic' or 'jsonl'"),
        (
            GOOD.replace("op_types: [LSTM, Gemm]", "op_types: [LSTM, Conv]"),
            r"stages\[2\].quantize_dynamic.op_types\[1\]: 'Conv' is not allowed",
        ),
        (
            GOOD.replace("op_types: [LSTM, Gemm]}", "accept: {min_agreement: 1.5}}"),
            r"stages\[2\].quantize_dynamic.accept.min_agreement: 1.5 is not allowed",
        ),
        (
            GOOD.replace("op_types: [LSTM, Gemm]}", "accept: {tolerance: 1}}"),
            r"stages\[2\].quantize_dynamic.accept.tolerance: unknown key; "
            r"allowed keys: max_abs_error, rtol, min_agreement",
        ),
        (GOOD.replace("  - export: {opset: 17}\n", ""), r"stages\[0\]: 'simplify' cannot stand here.*: export"),
        (GOOD + "  - export: {}\n", r"stages\[3\]: 'export' cannot stand here"),
        (GOOD.replace("stages:\n", "stages: []\nx:\n"), r"stages: \[\] is not allowed"),
        (GOOD.replace("  - simplify: {}\n", "  - simplify\n"), r"stages\[1\]: a stage is a mapping of one stage name"),
        (
            GOOD.replace("task:TextClassifier", "task.TextClassifier"),
            r"model.class: 'task.TextClassifier' is not allowed",
        ),
        (
            GOOD.replace("  weights: model.pt\n", "  weights: model.pt\n  inputs: [{name: t, axes: [batch, batch]}]\n"),
            r"model.inputs\[0\]: .*axes must name 'sequence' and 'batch' once each",
        ),
        (
            GOOD.replace("  weights: model.pt\n", "  weights: model.pt\n  inputs: [{name: a}, {name: b}]\n"),
            r"model: .*exactly one input must have feed 'ids'",
        ),
        (
            GOOD.replace(
                "  weights: model.pt\n", "  weights: model.pt\n  inputs: [{name: a}, {name: a, feed: mask}]\n"
            ),
            r"model: .*input names must differ",
        ),
        (
            GOOD.replace("  weights: model.pt\n", "  weights: model.pt\n  inputs: [{name: a, feed: segment}]\n"),
            r"model.inputs\[0\].feed: 'segment' is not allowed: Input should be 'ids', 'mask' or 'zeros'",
        ),
        (
            GOOD.replace("  weights: model.pt\n", "  weights: model.pt\n  input: {name: text}\n"),
            r"model.input: unknown key; allowed keys: class, weights, kwargs, inputs",
        ),
        (
            GOOD + "runtimes: [tensorrt]\n",
            r"runtimes\[0\]: unknown engine 'tensorrt'; known engines: onnxruntime, openvino",
        ),
        (GOOD + "runtimes: [onnxruntime, onnxruntime]\n", r"runtimes: each engine may be named once"),
        (
            GOOD + "runtimes: [{openvino: {inference_precision: int4}}]\n",
            r"runtimes\[0\].openvino.inference_precision: 'int4' is not allowed: Input should be 'f32', 'bf16' or 'f16'",
        ),
        (GOOD + "runtimes: [{openvino: 3}]\n", r"runtimes\[0\].openvino: expected a mapping of parameters, got int"),
        (GOOD + "runtimes: []\n", r"runtimes: \[\] is not allowed"),
        ("- just\n- a list\n", r"r.yaml: a recipe is a mapping with keys name, root"),
        ("model: [unclosed\n", r"r.yaml: not valid YAML \(line 2"),
        (GOOD + "model: {}\n", r"duplicate key 'model'"),
        (
            "!!python/object/apply:os.system ['echo owned']\n",
            r"not valid YAML \(line 1, column 1\): tags are not allowed in a recipe: !!python/object/apply:os.system$",
        ),
        (
            GOOD.replace("opset: 17", "opset: !!int 17"),
            r"r.yaml: not valid YAML \(line 5, column 21\): tags are not allowed in a recipe: !!int$",
        ),
        (
            GOOD.replace("  weights: model.pt\n", "  weights: model.pt\n  inputs: [{name: t, bogus: 1}]\n"),
            r"model.inputs\[0\].bogus: unknown key; allowed keys: name, feed, dtype, axes",
        ),
        (GOOD + "bench: {list: 1}\n", r"r.yaml: bench.list: unknown key; allowed keys: enabled, budget_seconds"),
    ],
)
def test_recipe_errors_name_file_key_path_and_choices(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message):
        _load(tmp_path, text)


def test_scientific_notation_without_a_dot_is_a_float(tmp_path):
    parsed = _load(tmp_path, GOOD.replace("{opset: 17}", "{opset: 17, accept: {max_abs_error: 1e-4}}"))
    assert parsed.stages[0].accept.max_abs_error == 1e-4


def test_non_utf8_and_missing_recipe(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"model: \xff\xfe\n")
    with pytest.raises(RecipeError, match=r"bad.yaml: not UTF-8 text \(byte 7\)"):
        recipe.load(bad)
    with pytest.raises(RecipeError, match=r"absent.yaml: cannot read recipe"):
        recipe.load(tmp_path / "absent.yaml")


def test_cli_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(GOOD.replace("weight_type: qint8", "weight_type: int4"))
    before = sorted(tmp_path.iterdir())
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "stages[2].quantize_dynamic.weight_type" in err
    assert "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == before


def test_a_stage_that_keeps_its_input_s_precision_is_judged_by_it(tmp_path):
    """An optimizer after a quantizer declares no precision of its own: its artifact is still int8, labelled and
    judged by the int8 rule, not the fp32 one."""
    parsed = _load(
        tmp_path,
        "model: {class: task:TextClassifier, weights: model.pt}\n"
        "stages:\n  - export: {}\n  - simplify: {}\n  - quantize_dynamic: {op_types: [LSTM]}\n  - ort_optimize: {}\n",
    )
    assert [(s.name, s.precision.name) for s in parsed.stages] == [
        ("export", "fp32"), ("simplify", "fp32"), ("quantize_dynamic", "int8"), ("ort_optimize", "int8"),
    ]
    assert parsed.stages[3].accept == parsed.stages[2].accept and parsed.stages[3].accept.max_abs_error is None


@pytest.mark.parametrize(
    ("stages", "where"),
    [
        ("  - export: {}\n  - quantize_static: {}\n", r"stages\[1\] \(quantize_static\)"),
        (
            "  - export: {}\n  - quantize_dynamic: {}\nsearch: {stage: [quantize_dynamic, quantize_static]}\n",
            r"search.stage \(quantize_static\)",
        ),
    ],
)
def test_a_calibrating_stage_without_calibration_samples_is_refused_before_any_work(tmp_path, stages, where):
    """A file evaluation set has no calibration stream of its own (the synthetic one has): refused at load, where it
    once surfaced only when the chain reached the stage, after the stages before it had run."""
    (tmp_path / "eval.jsonl").write_text('{"tokens": [1, 2, 3], "label": 0}\n')
    text = GOOD.split("stages:")[0] + "data: {jsonl: eval.jsonl}\nstages:\n" + stages
    with pytest.raises(RecipeError, match=rf"r.yaml: data.calibration: {where} calibrates on samples apart"):
        _load(tmp_path, text)
    (tmp_path / "calibration.jsonl").write_text('{"tokens": [4, 5], "label": 1}\n')
    with_file = "data: {jsonl: eval.jsonl, calibration: calibration.jsonl}"
    calibrated = _load(tmp_path, text.replace("data: {jsonl: eval.jsonl}", with_file))
    assert calibrated.settings.data.calibration == "calibration.jsonl"
    assert _load(tmp_path, text.replace("data: {jsonl: eval.jsonl}", "data: {synthetic: {size: 100}}")).stages


BOUNDED = GOOD.replace("  weights: model.pt\n", "  weights: model.pt\n  max_length: 100\n")


def test_default_lengths_are_cut_to_the_models_longest_input():
    fitted = recipe.parse(BOUNDED, ROOT / "recipes" / "bounded.yaml").settings
    assert fitted.model.max_length == 100 and fitted.model.feed.max_length == 100
    assert fitted.bench.latency_lengths == (32, 100) and fitted.bench.chart_lengths == (16, 32, 100)
    assert fitted.bench.throughput.length == 100 and fitted.data.synthetic.max_len == 100
    short = recipe.parse(BOUNDED.replace("max_length: 100", "max_length: 6"), ROOT / "recipes" / "short.yaml").settings
    assert short.model.example_length == 6 and short.data.synthetic.min_len == 6 and short.bench.chart_lengths == (3, 6)
    assert {f["text"].shape[0] for f in fitted.model.feed.probes()} == {7, 64, 100}  # [sequence, batch]
    untouched = recipe.parse(GOOD, ROOT / "recipes" / "plain.yaml").settings  # no bound: as written
    assert untouched.bench.latency_lengths == (32, 256) and untouched.data.synthetic.max_len == 256


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("bench: {latency_lengths: [32, 128]}\n", r"bench.latency_lengths: 128 is longer than"),
        ("bench: {chart_lengths: [16, 300, 400]}\n", r"bench.chart_lengths: \[300, 400\] is longer than"),
        ("bench: {throughput: {batch: 4, length: 101}}\n", r"bench.throughput.length: 101 is longer than"),
        ("target: {length: 200}\n", r"target.length: 200 is longer than"),
        ("target: [{batch: 1}, {length: 200}]\n", r"target\[1\].length: 200 is longer than"),
        ("data: {synthetic: {max_len: 120}}\n", r"data.synthetic.max_len: 120 is longer than"),
        ("data: {synthetic: {min_len: 110, max_len: 120}}\n", r"data.synthetic.min_len: 110 is longer than"),
    ],
)
def test_a_length_set_beyond_the_models_longest_input_is_refused(extra, where):
    with pytest.raises(RecipeError, match=rf"b.yaml: {where} the model takes at most 100 tokens \(model.max_length\)$"):
        recipe.parse(BOUNDED + extra, ROOT / "recipes" / "b.yaml")
