"""metrics.json data -> report.md (the same figures, for people). Renders; measures nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.render import speed
from workbench.render.markdown import table as _table
from workbench.runtimes import REFERENCE
from workbench.store.files import write_atomic


def write(data: dict[str, Any], recipe_text: str, folder: Path) -> None:
    text = json.dumps(data, indent=2) + "\n"
    write_atomic(folder / "metrics.json", lambda tmp: tmp.write_text(text))
    rendered = render(data, recipe_text)
    write_atomic(folder / "report.md", lambda tmp: tmp.write_text(rendered))


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def verdict_line(data: dict[str, Any]) -> str:
    failed = [s for s in data["stages"] if s["verdict"] != "passed"]
    if not failed and not data["skipped"]:
        engines = ", ".join(r["engine"] for r in data["runtimes"])
        return f"**PASSED**: all {len(data['stages'])} stages of `{data['recipe']}` are within their thresholds ({engines})."
    reasons = "; ".join(f"{s['stage']}: {', '.join(s['failures'])}" for s in failed)
    skipped = f" Not run: {', '.join(data['skipped'])}." if data["skipped"] else ""
    return f"**FAILED**: {reasons}.{skipped}"


HEADER = [
    "row",
    "artifact",
    "bytes",
    "of fp32",
    "ran as",
    "max abs err",
    "mean abs err",
    "agreement",
    "accuracy",
    "verdict",
]


def summary_rows(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The one table: PyTorch fp32 first, then a row per stage and engine (used by report.md and the terminal)."""
    ref = data["reference"]
    rows = [
        [
            REFERENCE,
            ref["weights"],
            f"{ref['bytes']:,}",
            "-",
            "fp32",
            "0",
            "0",
            "100.00%",
            _pct(ref["accuracy"]),
            "reference",
        ]
    ]
    for s in data["stages"]:
        art = s["artifact"] or {}
        size = [art.get("file", "-"), f"{art['bytes']:,}" if art else "-", _pct(art.get("share_of_fp32"), 1)]
        if not s["engines"]:
            rows.append([s["stage"], *size, "-", "-", "-", "-", "-", s["verdict"]])
        for e in s["engines"]:
            chk = e["check"] or {}
            if e["not_applicable"]:
                verdict = "not applicable"
            else:
                verdict = "passed" if e["passed"] else "FAILED"
            verdict += " (cached)" if s["cached"] and e["cached"] else ""
            rows.append(
                [
                    e["row"],
                    *size,
                    e["precision"],
                    _sci(chk.get("max_abs_error")),
                    _sci(chk.get("mean_abs_error")),
                    _pct(chk.get("agreement")),
                    _pct(chk.get("accuracy")),
                    verdict,
                ]
            )
    return HEADER, rows


def render(data: dict[str, Any], recipe_text: str) -> str:
    header, rows = summary_rows(data)
    parts = [f"# {data['recipe']}: {data['verdict']}", "", verdict_line(data), "", _table(header, rows), ""]
    inputs = ", ".join(f"`{i['name']}` ({i['feed']}, {i['dtype']}, [{', '.join(i['axes'])}])" for i in data["inputs"])
    parts += [
        f"Validation: {data['reference']['samples']} samples ({_data_line(data['data'])}); inputs {inputs}; "
        "every artifact is compared with the PyTorch fp32 model on the same inputs, on every engine the recipe "
        "names. `ran as` is what the engine reports it ran (its runtime graph or the file's int8 ops); an engine "
        "that refuses an artifact gives a `not applicable` row that does not fail the run.",
        "",
    ]
    parts += _not_applicable(data) + _padding(data) + _batch_dependence(data)
    parts += speed.section(data)
    before: dict[str, int] = {}
    for s in data["stages"]:
        parts += _stage_section(s, before)
        before = (s["artifact"] or {}).get("op_counts", before)
    parts += _notes(data) + _provenance(data, recipe_text)
    return "\n".join(parts) + "\n"


def _not_applicable(data: dict[str, Any]) -> list[str]:
    rows = [[e["row"], e["not_applicable"]] for s in data["stages"] for e in s["engines"] if e["not_applicable"]]
    return ["### Not applicable", "", _table(["row", "the engine's reason"], rows), ""] if rows else []


def _padding(data: dict[str, Any]) -> list[str]:
    ref = data["reference"]
    if not ref.get("padding"):
        return []
    rows = [
        [
            REFERENCE,
            _sci(ref["padding"]["max_abs_error"]),
            _pct(ref["padding"]["agreement"]),
            "passed" if ref["padding"]["passed"] else "FAILED",
        ]
    ]
    for s in data["stages"]:
        for e in s["engines"]:
            if e["padding"]:
                p = e["padding"]
                rows.append(
                    [
                        e["row"],
                        _sci(p["max_abs_error"]),
                        _pct(p["agreement"]),
                        "passed" if p["passed"] else "FAILED: " + "; ".join(p["failures"]),
                    ]
                )
    return [
        "### Padding",
        "",
        "The model takes an attention mask, so every runner also ran the evaluation set in mixed-length batches "
        "padded to their longest sample with the mask set (what a serving batcher sends); each sample's logits "
        "are compared with its own unpadded run, under the stage's thresholds (fp32: "
        "`|diff| <= 1e-5 + 1e-5 * |unpadded|`).",
        "",
        _table(["row", "max abs diff, padded vs unpadded", "agreement", "verdict"], rows),
        "",
    ]


def _batch_dependence(data: dict[str, Any]) -> list[str]:
    rows = [
        [
            e["row"],
            str(e["batch_dependence"]["samples"]),
            _sci(e["batch_dependence"]["max_abs_diff"]),
            _pct(e["batch_dependence"]["agreement"]),
        ]
        for s in data["stages"]
        for e in s["engines"]
        if e["batch_dependence"]
    ]
    if not rows:
        return []
    return [
        "### Batch dependence of int8",
        "",
        "Dynamic int8 quantizes activations per batch, so a sample's output depends on the other samples in its "
        "batch. Each sample below ran alone and inside its evaluation batch; the figures are the largest logit "
        "difference between the two and the share of samples whose top-1 class is the same. Reported, not judged.",
        "",
        _table(["row", "samples", "max abs diff, alone vs in batch", "top-1 agreement"], rows),
        "",
    ]


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
    if s.get("same_graph_as"):
        parts.append(
            f"- graph: the same nodes, weights and opsets as {s['same_graph_as']}'s (only metadata differs), so each "
            "engine's outputs and timings are those of that stage, computed once"
        )
    for e in s["engines"]:
        if e["check"]:
            chk = e["check"]
            limits = ", ".join(f"{k} {v}" for k, v in chk["accept"].items() if v is not None) or "none"
            parts.append(
                f"- {e['row']}: ran as {e['precision']}; thresholds: {limits}; "
                f"accuracy drop {100 * chk['accuracy_drop']:.2f} points"
            )
            if chk["failures"]:
                parts.append(f"- **FAILED** on {e['engine']}: {'; '.join(chk['failures'])}")
    facts = s["facts"]
    parts += [f"- {line}" for line in s["fact_lines"]]
    for line in facts.get("warnings") or []:
        parts.append(f"- the tool said: {line.splitlines()[0][:300]}")
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


def _notes(data: dict[str, Any]) -> list[str]:
    if not data.get("notes"):
        return []
    return (
        [
            "## Notes from the tools",
            "",
            "Warnings and log lines the tools printed during the run (kept here, off the terminal):",
            "",
        ]
        + [f"- {line}" for line in data["notes"]]
        + [""]
    )


def _provenance(data: dict[str, Any], recipe_text: str) -> list[str]:
    env = data["environment"]
    ref = data["reference"]
    rows = [[ref["weights"], f"`{ref['sha256']}`"]]
    rows += [[s["artifact"]["file"], f"`{s['artifact']['sha256']}`"] for s in data["stages"] if s["artifact"]]
    skip = {"cpu", "cores", "threads", "platform"}
    versions = ", ".join(f"{k} {v}" for k, v in env.items() if k not in skip)
    time = data.get("time") or {}
    split = ""
    if time:
        rest = time["total"] - time["validation"] - time["benchmarks"]
        split = (
            f" (validation {time['validation']:.1f} s, benchmarks {time['benchmarks']:.1f} s, the rest {rest:.1f} s)"
        )
    return [
        "## Provenance",
        "",
        _table(["file", "sha256"], rows),
        "",
        f"- versions: {versions}",
        f"- machine: {env['cpu']}, {env['cores']} cores, {env['threads']} threads used, {env['platform']}",
        f"- date: {data['started']}; the command took {data['seconds']:.1f} s{split}",
        "",
        "Recipe:",
        "",
        "```yaml",
        recipe_text.rstrip(),
        "```",
    ]
