"""The shipped recipes, run as a user runs them: int8 and fp32 on their full evaluation sets; the other model
families on smaller sets (the recipe files keep their full ones). Benchmarks off: speed lives in benchmarks/."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from workbench.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _project(tmp_path: Path, name: str, *, size: int | None = None) -> Path:
    """A copy of the repository's recipe, model code and weights, so reports and caches stay in tmp_path."""
    (tmp_path / "recipes").mkdir()
    text = (ROOT / "recipes" / f"{name}.yaml").read_text()
    if size is not None:
        document = yaml.safe_load(text)
        document["data"]["synthetic"]["size"] = size
        text = yaml.safe_dump(document, sort_keys=False)
    (tmp_path / "recipes" / f"{name}.yaml").write_text(text)
    shutil.copy(ROOT / "task.py", tmp_path / "task.py")
    weights = yaml.safe_load(text)["model"]["weights"]
    (tmp_path / weights).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / weights, tmp_path / weights)
    return tmp_path


def _run(project: Path, name: str) -> dict:
    """Run the recipe; its metrics.json, checked against the run model's printed JSON Schema."""
    import jsonschema

    from workbench.results import Run

    assert main(["run", str(project / "recipes" / f"{name}.yaml"), "--quiet", "--no-bench"]) == 0
    metrics = json.loads((project / "reports" / name / "metrics.json").read_text())
    jsonschema.validate(metrics, json.loads(Run.schema_text()))  # what `workbench schema` prints
    return metrics


def _readme(pattern: str) -> str:
    """The figure ``pattern`` captures in the README (a space in the pattern matches any run of whitespace)."""
    found = re.search(pattern.replace(" ", r"\s+"), (ROOT / "README.md").read_text())
    assert found, f"README has no figure matching {pattern!r}"
    return found.group(1)


def test_int8_recipe_on_its_full_set_matches_the_readme(tmp_path):
    metrics = _run(_project(tmp_path, "int8"), "int8")
    assert metrics["reference"]["samples"] == 2000 and metrics["verdict"] == "passed"
    final = metrics["stages"][-1]
    assert final["artifact"]["op_counts"]["DynamicQuantizeLSTM"] == 1
    # the README's figures for this run: size, share of fp32, accuracy of both
    assert f"{final['artifact']['bytes']:,}" == _readme(r"int8 is ([\d,]+) bytes")
    assert f"{100 * final['share_of_export']:.1f}%" == _readme(r"int8 is [\d,]+ bytes = ([\d.]+%) of fp32")
    check = final["checks"][0]["check"]
    assert f"{100 * check['comparison']['accuracy']:.2f}%" == _readme(r"int8 accuracy on the 2,000 samples: ([\d.]+%)")
    assert f"{100 * metrics['reference']['accuracy']:.2f}%" == _readme(r"PyTorch fp32 accuracy on them: ([\d.]+%)")


def test_fp32_recipe_on_its_full_set(tmp_path):
    metrics = _run(_project(tmp_path, "fp32"), "fp32")
    (export,) = metrics["stages"]
    assert metrics["verdict"] == "passed" and metrics["reference"]["samples"] == 2000
    assert export["checks"][0]["check"]["comparison"]["max_excess"] <= 1e-5  # |diff| <= 1e-5 + 1e-5 * |reference|
    assert f"{export['checks'][0]['check']['comparison']['max_abs_error']:.1e}" == _readme(
        r"differs from PyTorch by at most ([\d.e-]+)"
    )


@pytest.mark.parametrize("name", ["bert", "bilstm", "gru"])
def test_other_model_families(tmp_path, name):
    metrics = _run(_project(tmp_path, name, size=240), name)
    assert metrics["verdict"] == "passed"
    assert metrics["reference"]["accuracy"] >= 0.95
    final = metrics["stages"][-1]
    assert final["precision"] == "int8" and final["checks"][0]["batch_dependence"]["samples"] == 240
    if name == "bert":
        fusions = next(s for s in metrics["stages"] if s["stage"] == "ort_optimize")["facts"]["fusions"]
        assert fusions.get("Attention", 0) > 0 and sum(fusions.values()) > 0
        assert fusions["EmbedLayerNormalization"] == 1 and fusions["SkipLayerNormalization"] == 4
        assert _readme(r"on the BERT: ([A-Za-z0-9, ]+)\)") == ", ".join(f"{k} {v}" for k, v in fusions.items() if v)
        assert metrics["reference"]["padding"]["passed"]
        ran = [e for s in metrics["stages"] for e in s["checks"] if not e["not_applicable"]]
        assert len(ran) == 7 and all(e["padding"]["passed"] for e in ran)
        refused = {e["row"]: e for e in final["checks"]}["openvino:quantize_dynamic"]
        assert "No conversion rule found for operations: com.microsoft.QAttention" in refused["not_applicable"]
        assert final["checks"][0]["precision"].startswith("int8: MatMulInteger")
    if name == "gru":
        stayed = final["facts"]["stayed_fp32"]["GRU"]
        assert stayed["count"] >= 1 and 0 < stayed["share_of_file"] < 1
