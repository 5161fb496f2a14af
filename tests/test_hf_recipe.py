"""recipes/hf.yaml on a tiny Hugging Face folder built here (offline), end to end; data that cannot support a verdict
and folders that cannot be loaded safely are refused with one line and exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from workbench import evaluation, hf_example, huggingface, recipe
from workbench.cli import main

ROOT = Path(__file__).resolve().parent.parent
FAST = "bench: {enabled: false}\nlayer_errors: {samples: 8}\nthreads: 1\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of recipes/hf.yaml beside the folder `python -m workbench.hf_example examples/hf` makes (fewer steps)."""
    root = tmp_path_factory.mktemp("hfproject")
    hf_example.build(root / "examples" / "hf", steps=60, seed=0, samples=120)
    (root / "recipes").mkdir()
    shutil.copy(ROOT / "recipes" / "hf.yaml", root / "recipes" / "hf.yaml")
    return root


@pytest.fixture(scope="module")
def ran(project: Path) -> tuple[int, str, dict, str]:
    path = project / "recipes" / "fast.yaml"
    path.write_text((project / "recipes" / "hf.yaml").read_text() + FAST)
    code = main(["run", str(path), "--quiet"])
    folder = project / "reports" / "fast"
    return code, str(path), json.loads((folder / "metrics.json").read_text()), (folder / "report.md").read_text()


def test_hf_recipe_runs_end_to_end_with_padding_and_fusions(project, ran):
    code, _, metrics, report = ran
    assert code == 0
    assert [s["stage"] for s in metrics["stages"]] == ["export", "simplify", "ort_optimize", "quantize_dynamic"]
    assert all(s["passed"] for s in metrics["stages"]) and metrics["reference"]["samples"] == 120
    assert metrics["reference"]["weights"] == "model.safetensors" and metrics["reference"]["accuracy"] >= 0.9
    assert metrics["reference"]["padding"]["passed"]
    assert all(c["padding"]["passed"] for s in metrics["stages"] for c in s["checks"])
    fusions = metrics["stages"][2]["facts"]["fusions"]
    assert {k: v for k, v in fusions.items() if v} == {
        "EmbedLayerNormalization": 1, "Attention": 2, "BiasGelu": 2, "SkipLayerNormalization": 4,
    }
    quantized = metrics["stages"][3]["checks"][0]["precision"]
    assert "QAttention 2" in quantized and "QEmbedLayerNormalization 1" in quantized


def test_the_sizes_ort_optimize_needs_come_from_the_folder(project, ran):
    """The recipe leaves the sizes out; the export carries the folder's (and its class names) as ONNX metadata, and
    ort_optimize reads them from there (what Optimum does with the config), saying so in its facts."""
    info = huggingface.inspect(project / "examples" / "hf" / "model")
    stage = next(s for s in recipe.load(project / "recipes" / "hf.yaml").stages if s.name == "ort_optimize")
    assert (stage.params.num_heads, stage.params.hidden_size) == (0, 0) and (info.num_attention_heads, info.hidden_size) == (4, 64)
    metrics = json.loads((project / "reports" / "fast" / "metrics.json").read_text())
    assert metrics["stages"][2]["facts"]["sizes"] == "bert, 4 heads, hidden 64"
    exported = project / "reports" / "fast" / "export.onnx"
    assert huggingface.transformer_sizes(exported) == ("bert", 4, 64)
    import onnx

    props = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert json.loads(props["class_names"]) == ["negative", "positive"]


def test_inputs_and_vocabulary_come_from_the_folder(project):
    parsed = recipe.load(project / "recipes" / "hf.yaml")
    spec = parsed.model.resolved(parsed.root)
    assert [(i.name, i.feed, i.axes) for i in spec.inputs] == [
        ("input_ids", "ids", ("batch", "sequence")),
        ("attention_mask", "mask", ("batch", "sequence")),
        ("token_type_ids", "zeros", ("batch", "sequence")),
    ]
    assert spec.vocab_size == huggingface.inspect(project / "examples" / "hf" / "model").vocab_size
    assert spec.weights == "examples/hf/model/model.safetensors" and spec.resolved(parsed.root) == spec


def test_evaluation_facts_state_classes_resolution_and_truncation(project, tmp_path):
    path = project / "recipes" / "cut.yaml"
    text = (project / "recipes" / "hf.yaml").read_text().replace("max_length: 64", "max_length: 8")
    path.write_text(text.replace("min_agreement: 0.99", "min_agreement: 0.995"))
    ev = evaluation.evaluation_of(recipe.load(path))
    facts = ev.facts
    assert facts.samples == len(ev) == 120 and facts.resolution == pytest.approx(1 / 120)
    assert facts.class_names == ("negative", "positive") and sum(facts.label_counts) == 120
    tokenizer = huggingface.load_tokenizer(project / "examples" / "hf" / "model")
    rows = (project / "examples" / "hf" / "eval.csv").read_text().splitlines()[1:]
    lengths = [len(tokenizer(line.rsplit(",", 1)[0].strip('"'))["input_ids"]) for line in rows]
    assert facts.truncated == sum(n > 8 for n in lengths) > 0 and facts.longest == max(lengths)
    assert max(ev.tokens.lengths) == 8 and ev.tokens.where(0).endswith("eval.csv:2")
    assert facts.coarse == (
        "quantize_dynamic: min_agreement 0.995 is finer than one sample of 120 (0.83%): a single sample fails it; "
        "it tolerates one from 200 samples on",
    )


def test_report_names_the_classes_resolution_truncation_and_inputs(ran):
    report = ran[3]
    assert "- classes (samples): negative (" in report
    assert "- resolution: one sample = 0.83% of agreement and accuracy (120 samples" in report
    assert "texts truncated" in report and "inputs `input_ids` (ids, int64, [batch, sequence])" in report


def _variant(project: Path, tmp_path: Path, *, data: str | None = None, folder: Path | None = None) -> Path:
    """The hf recipe with another data block or model folder, run from ``tmp_path``."""
    text = (project / "recipes" / "hf.yaml").read_text().replace("root: ..", f"root: {project}")
    if folder is not None:
        text = text.replace("huggingface: examples/hf/model", f"huggingface: {folder}")
    if data is not None:
        start, end = text.index("data:"), text.index("runtimes:")
        text = text[:start] + data + text[end:]
    path = tmp_path / "variant.yaml"
    path.write_text(text + FAST + f"reports: {tmp_path}/reports\n")
    return path


def _refused(path: Path, capfd) -> str:
    code = main(["run", str(path), "--quiet"])
    out, err = capfd.readouterr()
    assert code == 2 and "Traceback" not in out + err and not out
    assert err.count("\n") == 1, err  # one line
    return err.strip()


def _csv(tmp_path: Path, rows: list[str], header: str = "text,label") -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_a_label_outside_the_classes_is_one_line_naming_file_line_and_allowed(project, tmp_path, capfd):
    rows = ["the film was good,positive"] * 59 + ["the film was awful,neutral"]
    data = f"data: {{csv: {_csv(tmp_path, rows)}, text: text, label: label}}\n"
    err = _refused(_variant(project, tmp_path, data=data), capfd)
    assert err == (
        f"error: {tmp_path}/bad.csv:61: label 'neutral' is not one of the model's classes; "
        "allowed: negative (0), positive (1)"
    )


def test_a_text_column_that_does_not_exist_is_one_line(project, tmp_path, capfd):
    data = f"data: {{csv: {_csv(tmp_path, ['good,positive'] * 60)}, text: review, label: label}}\n"
    err = _refused(_variant(project, tmp_path, data=data), capfd)
    assert err == f"error: {tmp_path}/bad.csv: no column 'review'; the columns are: text, label"


def test_a_set_below_the_floor_is_refused_and_the_recipe_can_lower_it(project, tmp_path, capfd):
    csv = _csv(tmp_path, ["the film was good,positive", "the film was awful,0"] * 10)
    err = _refused(_variant(project, tmp_path, data=f"data: {{csv: {csv}, text: text}}\n"), capfd)
    assert err.startswith(f"error: {tmp_path}/variant.yaml: data ({csv}) has 20 samples, fewer than the floor of 50")
    assert "one sample = 5.00% of agreement and accuracy" in err
    lowered = _variant(project, tmp_path, data=f"data: {{csv: {csv}, text: text, min_samples: 20}}\n")
    assert main(["run", str(lowered), "--quiet"]) == 0


def test_a_token_label_the_model_has_no_output_for_is_one_line(project, tmp_path, capfd):
    lines = [json.dumps({"tokens": [2, 30, 40, 3], "label": i % 2}) for i in range(59)]
    (tmp_path / "ids.jsonl").write_text("\n".join([*lines, json.dumps({"tokens": [2, 9, 3], "label": 5})]) + "\n")
    err = _refused(_variant(project, tmp_path, data=f"data: {{jsonl: {tmp_path}/ids.jsonl}}\n"), capfd)
    assert err == (
        f"error: {tmp_path}/ids.jsonl:60: label 5 is not one of the model's classes; allowed: negative (0), positive (1)"
    )


def test_a_folder_without_its_tokenizer_is_one_line(project, tmp_path, capfd):
    folder = tmp_path / "model"
    shutil.copytree(project / "examples" / "hf" / "model", folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    err = _refused(_variant(project, tmp_path, folder=folder), capfd)
    assert err.startswith(f"error: {folder}: no tokenizer files (expected tokenizer.json")


def test_a_pickle_only_folder_is_refused_in_one_line(project, tmp_path, capfd):
    folder = tmp_path / "model"
    shutil.copytree(project / "examples" / "hf" / "model", folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    err = _refused(_variant(project, tmp_path, folder=folder), capfd)
    assert err.startswith(f"error: {folder}: refused: weights only as a pickle (pytorch_model.bin)")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("{huggingface: m, weights: w.pt}", r"model: .*'huggingface' takes the model, weights, tokenizer and class "
                                            r"names from the folder; drop \['weights'\]"),
        ("{weights: w.pt}", r"model: .*give exactly one of 'class' \(with 'weights'\) or 'huggingface'"),
        ("{class: 'a:B'}", r"model.weights: required key is missing"),
    ],
)
def test_model_spec_errors_name_the_key(tmp_path, model, message):
    path = tmp_path / "r.yaml"
    path.write_text(f"model: {model}\nstages: [{{export: {{}}}}]\n")
    with pytest.raises(recipe.RecipeError, match=message):
        recipe.load(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{csv: a.csv}", r"'csv' needs 'text'"),
        ("{synthetic: {}, max_length: 8}", r"'text' and 'max_length' go with a 'csv' or 'jsonl' file of text"),
        ("{csv: a.csv, jsonl: b.jsonl, text: t}", r"give exactly one of 'synthetic' or 'jsonl' \(token ids or text\), or 'csv' \(text\)"),
        ("{synthetic: {}, min_samples: 0}", r"data.min_samples: 0"),
    ],
)
def test_data_spec_errors_name_the_key(tmp_path, data, message):
    path = tmp_path / "r.yaml"
    path.write_text(f"model: {{class: 'a:B', weights: w.pt}}\ndata: {data}\nstages: [{{export: {{}}}}]\n")
    with pytest.raises(recipe.RecipeError, match=message):
        recipe.load(path)


def test_benchmarks_time_the_folder_at_the_lengths_it_takes(project, ran, capsys):
    """The folder's model takes 128 positions; the default bench lengths (up to 256) are cut to it, the tuning
    probes too. The README's `run recipes/hf.yaml` stopped with exit 2 after the whole validation, at b1 l256."""
    path = project / "recipes" / "timed.yaml"
    path.write_text((project / "recipes" / "hf.yaml").read_text() + "bench: {budget_seconds: 0.05}\nthreads: 1\n")
    parsed = recipe.load(path)
    assert parsed.model.max_length == hf_example.MAX_POSITIONS == 128
    written = path.read_text().replace("  example_length: 16\n", "  example_length: 16\n  max_length: null\n")
    assert recipe.parse(written, path).model.max_length == 128  # null, as the README shows it: the folder's
    assert (parsed.settings.bench.latency_lengths, parsed.settings.bench.chart_lengths) == ((32, 128), (16, 32, 128))
    assert main(["run", str(path), "--quiet"]) == 0
    metrics = json.loads((project / "reports" / "timed" / "metrics.json").read_text())
    lengths = {t["case"]["length"] for t in metrics["bench"]["timings"]}
    headline = metrics["bench"]["headline"]
    assert max(lengths) == 128 and (headline["batch"], headline["length"]) == (1, 128)
    assert metrics["bench"]["tunings"]  # the tuning ran, its probes within the model's length
    # `workbench bench` on the file alone reads the limit from the metadata the export wrote
    exported = project / "reports" / "timed" / "export.onnx"
    assert {p.key: p.value for p in onnx.load(str(exported)).metadata_props}["max_length"] == "128"
    assert main(["bench", str(exported), "--budget", "0.05", "--threads", "1"]) == 0
    # a file that does not say: onnxruntime refuses b1 l256, in one line naming the file, the shapes, its words
    unsaid = onnx.load(str(exported))
    kept = {p.key: p.value for p in unsaid.metadata_props if p.key != "max_length"}
    del unsaid.metadata_props[:]
    onnx.helper.set_model_props(unsaid, kept)
    onnx.save(unsaid, str(project / "unsaid.onnx"))
    capsys.readouterr()
    assert main(["bench", str(project / "unsaid.onnx"), "--budget", "0.05", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unsaid.onnx failed while timing b1 l256 on inputs"), err
    assert "[ONNXRuntimeError]" in err  # the engine's own words
