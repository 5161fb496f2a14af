"""RunResult -> metrics.json (every figure) and report.md (the same figures, for people). Renders; measures nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench import speed
from workbench.markdown import table as _table
from workbench.pipeline import RunResult


def metrics(result: RunResult, artifacts: dict[str, Path]) -> dict[str, Any]:
    """The run as plain JSON-able data; report.md is rendered from this and nothing else."""
    fp32 = next((r.artifact.bytes for r in result.records if r.artifact is not None), None)
    ref = result.reference
    stages = []
    for record in result.records:
        art = record.artifact
        stages.append(
            {
                "stage": record.stage,
                "verdict": "passed" if record.passed else "FAILED",
                "error": record.error,
                "cached": record.cached,
                "seconds": round(record.seconds, 3),
                "params": record.params,
                "parent_sha256": record.parent,
                "artifact": None
                if art is None
                else {
                    "file": artifacts[record.stage].name,
                    "sha256": art.sha256,
                    "bytes": art.bytes,
                    "files": list(art.files),
                    "share_of_fp32": art.bytes / fp32 if fp32 else None,
                    "ops": art.op_total,
                    "op_counts": art.op_counts,
                    "inputs": {name: list(dims) for name, dims in art.inputs},
                },
                "facts": record.facts,
                "check": None if record.check is None else record.check.to_dict(),
            }
        )
    return {
        "recipe": result.recipe.name,
        "verdict": "passed" if result.passed else "FAILED",
        "started": result.started,
        "seconds": round(result.seconds, 3),
        "reference": {
            "stage": "pytorch_fp32",
            "weights": ref.weights.name,
            "sha256": ref.weights_sha256,
            "bytes": ref.weights_bytes,
            "accuracy": ref.accuracy,
            "samples": ref.samples,
            "cached": ref.cached,
        },
        "data": result.recipe.settings.data.model_dump(),
        "stages": stages,
        "skipped": list(result.skipped),
        "environment": result.environment,
        "bench": result.bench,
    }


def write(data: dict[str, Any], recipe_text: str, folder: Path) -> None:
    (folder / "metrics.json").write_text(json.dumps(data, indent=2) + "\n")
    (folder / "report.md").write_text(render(data, recipe_text))


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def verdict_line(data: dict[str, Any]) -> str:
    failed = [s for s in data["stages"] if s["verdict"] != "passed"]
    if not failed and not data["skipped"]:
        return f"**PASSED**: all {len(data['stages'])} stages of `{data['recipe']}` are within their thresholds."
    reasons = "; ".join(f"{s['stage']}: {s['error'] or ', '.join(s['check']['failures'])}" for s in failed)
    skipped = f" Not run: {', '.join(data['skipped'])}." if data["skipped"] else ""
    return f"**FAILED**: {reasons}.{skipped}"


def summary_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The one table: a row per stage, PyTorch fp32 first (used by report.md and the terminal)."""
    ref = data["reference"]
    header = [
        "stage",
        "artifact",
        "bytes",
        "of fp32",
        "ops",
        "max abs err",
        "mean abs err",
        "max rel err",
        "agreement",
        "accuracy",
        "verdict",
    ]
    rows = [
        [
            "pytorch fp32",
            ref["weights"],
            f"{ref['bytes']:,}",
            "-",
            "-",
            "0",
            "0",
            "0",
            "100.00%",
            _pct(ref["accuracy"]),
            "reference",
        ]
    ]
    for s in data["stages"]:
        art, chk = s["artifact"] or {}, s["check"] or {}
        verdict = s["verdict"] + (" (cached)" if s["cached"] else "")
        rows.append(
            [
                s["stage"],
                art.get("file", "-"),
                f"{art['bytes']:,}" if art else "-",
                _pct(art.get("share_of_fp32"), 1),
                str(art.get("ops", "-")),
                _sci(chk.get("max_abs_error")),
                _sci(chk.get("mean_abs_error")),
                _sci(chk.get("max_rel_error")),
                _pct(chk.get("agreement")),
                _pct(chk.get("accuracy")),
                verdict,
            ]
        )
    return header, rows


def render(data: dict[str, Any], recipe_text: str) -> str:
    header, rows = summary_rows(data)
    parts = [f"# {data['recipe']}: {data['verdict']}", "", verdict_line(data), "", _table(header, rows), ""]
    parts += [
        f"Validation: {data['reference']['samples']} samples ({_data_line(data['data'])}); "
        "every artifact is compared with the PyTorch fp32 model on the same inputs.",
        "",
    ]
    parts += speed.section(data)
    before: dict[str, int] = {}
    for s in data["stages"]:
        parts += _stage_section(s, before)
        before = (s["artifact"] or {}).get("op_counts", before)
    parts += _provenance(data, recipe_text)
    return "\n".join(parts) + "\n"


def _data_line(spec: dict[str, Any]) -> str:
    if spec.get("jsonl"):
        return f"JSONL file `{spec['jsonl']}`"
    syn = spec["synthetic"]
    return f"synthetic held-out set, seed {syn['seed']}, lengths {syn['min_len']}-{syn['max_len']}"


def _stage_section(s: dict[str, Any], before: dict[str, int]) -> list[str]:
    parts = [f"## {s['stage']}", ""]
    params = ", ".join(f"{k}={v}" for k, v in s["params"].items()) or "defaults"
    took = (
        "cached (taken from an earlier run with the same input, parameters and tool versions)"
        if s["cached"]
        else f"{s['seconds']:.2f} s"
    )
    parts += [f"- parameters: {params}", f"- time: {took}"]
    if s["error"]:
        return parts + [f"- **FAILED**: {s['error']}", ""]
    chk = s["check"]
    limits = ", ".join(f"{k} {v}" for k, v in chk["accept"].items() if v is not None) or "none"
    parts.append(f"- thresholds: {limits}; accuracy drop {100 * chk['accuracy_drop']:.2f} points")
    if chk["failures"]:
        parts.append(f"- **FAILED**: {'; '.join(chk['failures'])}")
    facts = s["facts"]
    if "fusions" in facts:
        found = {k: v for k, v in facts["fusions"].items() if v}
        parts.append(
            f"- fusions found: {found}"
            if found
            else f"- fusions found: none (all {len(facts['fusions'])} fusion kinds the optimizer knows report 0)"
        )
    if "quantized" in facts:
        parts.append("- quantized: " + ", ".join(f"{n} x {op}" for op, n in facts["quantized"].items()))
    after = s["artifact"]["op_counts"]
    inputs = ", ".join(f"{name} {dims}" for name, dims in s["artifact"]["inputs"].items())
    parts += [f"- inputs: {inputs}", ""]
    ops = sorted(set(before) | set(after))
    rows = [
        [
            op,
            str(before.get(op, 0)) if before else "-",
            str(after.get(op, 0)),
            _change(before.get(op, 0), after.get(op, 0)) if before else "",
        ]
        for op in ops
    ]
    parts += [_table(["op type", "before", "after", "change"], rows), ""]
    return parts


def _change(old: int, new: int) -> str:
    return "" if old == new else f"{new - old:+d}"


def _provenance(data: dict[str, Any], recipe_text: str) -> list[str]:
    env = data["environment"]
    ref = data["reference"]
    rows = [[ref["weights"], f"`{ref['sha256']}`"]]
    rows += [[s["artifact"]["file"], f"`{s['artifact']['sha256']}`"] for s in data["stages"] if s["artifact"]]
    versions = ", ".join(
        f"{k} {env[k]}" for k in ("python", "torch", "onnx", "onnxruntime", "onnxsim", "numpy", "workbench")
    )
    return [
        "## Provenance",
        "",
        _table(["file", "sha256"], rows),
        "",
        f"- versions: {versions}",
        f"- machine: {env['cpu']}, {env['cores']} cores, {env['threads']} threads used, {env['platform']}",
        f"- date: {data['started']}; run took {data['seconds']:.1f} s",
        "",
        "Recipe:",
        "",
        "```yaml",
        recipe_text.rstrip(),
        "```",
    ]
