"""The run model -> report.md (the same figures as metrics.json, for people). Renders; measures nothing."""

from __future__ import annotations

from workbench.render import decision, speed
from workbench.render.markdown import pct, sci, table
from workbench.results import EngineCheck, Run, SplitValidation, StageRecord
from workbench.runtimes import REFERENCE


def headline(run: Run) -> str:
    """The verdict in one sentence, naming per stage the engines that ran it."""
    failed = [s for s in run.stages if not s.passed]
    if not failed and not run.skipped:
        ran = "; ".join(f"{s.stage} on {', '.join(c.engine for c in s.ran)}" for s in run.stages)
        return f"**PASSED**: all {len(run.stages)} stages of `{run.recipe}` are within their thresholds ({ran})."
    reasons = "; ".join(f"{s.stage}: {', '.join(s.failures)}" for s in failed)
    skipped = f" Not run: {', '.join(run.skipped)} ({run.skip_reason})." if run.skipped else ""
    return f"**FAILED**: {reasons}.{skipped}"


HEADER = ["row", "artifact", "bytes", "of export", "ran as", "max abs err", "mean abs err", "agreement", "accuracy",
          "verdict", "rule"]
LEGEND = (
    "`of export`: size as a share of the exported fp32 file. `ran as`: the precision the engine reports it ran "
    "(its runtime graph or the file's int8 ops). `max/mean abs err`: of the logits against PyTorch fp32 on the "
    "same samples. `agreement`: share of samples whose top-1 class equals PyTorch fp32's. `rule`: the thresholds "
    "that judged the row."
)


def verdict(check: EngineCheck, *, cached: bool) -> str:
    word = "not applicable" if check.not_applicable else "passed" if check.passed else "FAILED"
    return word + (" (cached)" if cached else "")


def summary_rows(run: Run) -> list[list[str]]:
    """The one table: PyTorch fp32 first, then a row per stage and engine, in stage order."""
    ref = run.reference
    rows = [[REFERENCE, ref.weights, f"{ref.bytes:,}", "-", "fp32", "0", "0", "100.00%", pct(ref.accuracy),
             "reference", "-"]]
    for s in run.stages:
        art = s.artifact
        size = [art.file, f"{art.bytes:,}", pct(s.share_of_export, 1)] if art else ["-", "-", "-"]
        if not s.checks:
            rows.append([s.stage, *size, "-", "-", "-", "-", "-", "FAILED", "-"])
        for c in s.checks:
            comparison = c.check.comparison if c.check is not None else None
            rows.append(
                [
                    c.row,
                    *size,
                    c.precision,
                    sci(comparison.max_abs_error if comparison else None),
                    sci(comparison.mean_abs_error if comparison else None),
                    pct(comparison.agreement if comparison else None),
                    pct(comparison.accuracy if comparison else None),
                    verdict(c, cached=s.cached and c.cached),
                    f"{s.precision}: {c.check.rule}" if c.check is not None else "-",
                ]
            )
    return rows


def render(run: Run, charts: dict[str, str]) -> str:
    parts = [f"# {run.recipe}: {run.verdict}", "", headline(run), ""]
    parts += decision.section(run)  # what to ship per target (decide/ship.py)
    parts += [table(HEADER, summary_rows(run)), "", LEGEND, ""]
    inputs = ", ".join(f"`{i.name}` ({i.feed}, {i.dtype}, [{', '.join(i.axes)}])" for i in run.inputs)
    parts += [
        f"Validation: {run.reference.samples} samples ({_data_line(run.data)}); inputs {inputs}; every artifact is "
        "compared with the PyTorch fp32 model on the same inputs, on every engine the recipe names. An engine that "
        "refuses an artifact gives a `not applicable` row that does not fail the run; a stage passes when at least "
        "one engine ran it and every engine that ran it passed.",
        "",
    ]
    parts += _data_section(run)
    parts += _engine_notes(run) + _not_applicable(run) + _padding(run) + _batch_dependence(run)
    parts += speed.section(run, charts)
    before: dict[str, int] = {}
    for s in run.stages:
        parts += _stage_section(s, before)
        before = s.artifact.op_counts if s.artifact else before
    parts += _notes(run) + _provenance(run)
    return "\n".join(parts) + "\n"


def _engine_notes(run: Run) -> list[str]:
    """What an engine did with the artifacts, said once per engine: quantized files it ran without int8."""
    notes = []
    for engine in dict.fromkeys(c.engine for s in run.stages for c in s.checks):
        plain = [
            c.row for s in run.stages if s.precision.quantized for c in s.checks
            if c.engine == engine and c.ran and not _int8_ran(c.precision)
        ]
        if plain:
            notes.append(
                f"- {engine} ran {', '.join(plain)} without int8 arithmetic: its runtime graph turned the int8 "
                "ops back into float ones (the `ran as` column lists its layers and their precision)"
            )
    return ["Engine notes:", "", *notes, ""] if notes else []


def _int8_ran(ran_as: str) -> bool:
    words = ran_as.replace(":", " ").replace(";", " ").replace(",", " ").split()
    return any(w in ("int8", "i8", "u8", "i4", "u4") for w in words)


def _not_applicable(run: Run) -> list[str]:
    rows = [[c.row, c.not_applicable or ""] for s in run.stages for c in s.checks if c.not_applicable]
    rows += [[c.row, c.error or ""] for s in run.stages for c in s.checks if c.error]
    if not rows:
        return []
    return ["### Not run or failed on an engine", "", table(["row", "the engine's own words"], rows), ""]


def _padding(run: Run) -> list[str]:
    ref = run.reference
    if ref.padding is None:
        return []
    rows = [[REFERENCE, sci(ref.padding.comparison.max_abs_error), pct(ref.padding.comparison.agreement),
             "passed" if ref.padding.passed else "FAILED", ref.padding.rule]]
    for s in run.stages:
        for c in s.checks:
            if c.padding is not None:
                p = c.padding
                outcome = "passed" if p.passed else "FAILED: " + "; ".join(p.failures)
                rows.append([c.row, sci(p.comparison.max_abs_error), pct(p.comparison.agreement), outcome,
                             f"{s.precision}: {p.rule}"])
    return [
        "### Padding",
        "",
        "The model takes an attention mask, so every runner also ran the evaluation set in mixed-length batches "
        "padded to their longest sample with the mask set (what a serving batcher sends); each sample's logits "
        "are compared with its own unpadded run, under its stage's rule (shown per row). `agreement`: share of "
        "samples whose top-1 class is the same padded and unpadded.",
        "",
        table(["row", "max abs diff, padded vs unpadded", "agreement", "verdict", "rule"], rows),
        "",
    ]


def _batch_dependence(run: Run) -> list[str]:
    rows = [
        [c.row, str(c.batch_dependence.samples), sci(c.batch_dependence.max_abs_diff), pct(c.batch_dependence.agreement)]
        for s in run.stages
        for c in s.checks
        if c.batch_dependence
    ]
    if not rows:
        return []
    return [
        "### Batch dependence of quantized artifacts",
        "",
        "Dynamic quantization scales activations per batch, so a sample's output may depend on the other samples "
        "in its batch. Each sample below ran alone and inside its evaluation batch; the figures are the largest "
        "logit difference between the two and the share of samples whose top-1 class is the same. Reported, not "
        "judged.",
        "",
        table(["row", "samples", "max abs diff, alone vs in batch", "top-1 agreement"], rows),
        "",
    ]


def _data_line(spec: dict) -> str:
    text = f", text column `{spec['text']}`, label column `{spec.get('label', 'label')}`" if spec.get("text") else ""
    if spec.get("csv"):
        return f"CSV file `{spec['csv']}`{text}"
    if spec.get("jsonl"):
        return f"JSONL file `{spec['jsonl']}`{text}"
    syn = spec.get("synthetic") or {}
    return f"synthetic held-out set, seed {syn.get('seed')}, lengths {syn.get('min_len')}-{syn.get('max_len')}"


def _data_section(run: Run) -> list[str]:
    """What the evaluation set can support: its resolution, classes, truncation, thresholds finer than a sample."""
    facts = run.data_facts
    if facts is None:
        return []
    lines = [
        f"- resolution: one sample = {pct(facts.resolution)} of agreement and accuracy ({facts.samples} samples; "
        f"the recipe's floor is {facts.min_samples})"
    ]
    if facts.class_names:
        counts = ", ".join(f"{name} ({n})" for name, n in zip(facts.class_names, facts.label_counts, strict=False))
        lines.append(f"- classes (samples): {counts}")
    if facts.tokenizer:
        lines.append(
            f"- tokenized by {facts.tokenizer}, max_length {facts.max_length}: {facts.truncated} of {facts.samples} "
            f"texts truncated (the longest had {facts.longest} tokens)"
        )
    lines += [f"- **warning**: {warning}" for warning in facts.coarse]
    return ["Evaluation set:", "", *lines, ""]


def _stage_section(s: StageRecord, before: dict[str, int]) -> list[str]:
    parts = [f"## {s.stage}", ""]
    params = ", ".join(f"{k}={v}" for k, v in s.params.items()) or "defaults"
    took = (
        "cached (taken from an earlier run with the same input, parameters and tool versions)"
        if s.cached
        else f"{s.seconds:.2f} s"
    )
    parts += [f"- parameters: {params}", f"- precision: {s.precision}", f"- time: {took}"]
    if s.error:
        return parts + [f"- **FAILED**: {s.error}", ""]
    if s.same_graph_as:
        parts.append(
            f"- graph: the same nodes, weights and opsets as {s.same_graph_as}'s (only metadata differs), so each "
            "engine's outputs and timings are those of that stage, computed once"
        )
    for c in s.checks:
        if c.check is not None:
            parts.append(
                f"- {c.row}: ran as {c.precision}; rule: {c.check.rule}; "
                f"accuracy drop {100 * c.check.comparison.accuracy_drop:.2f} points"
            )
            if c.check.failures:
                parts.append(f"- **FAILED** on {c.engine}: {'; '.join(c.check.failures)}")
    if s.facts is not None:
        parts += [f"- {line}" for line in s.facts.lines()]
        parts += [f"- the tool said: {line}" for line in s.facts.warnings]
    parts += _layer_errors(s)
    assert s.artifact is not None
    inputs = ", ".join(f"{name} {list(dims)}" for name, dims in s.artifact.inputs.items())
    parts += [f"- inputs: {inputs}", ""]
    after = s.artifact.op_counts
    rows = [
        [op, str(before.get(op, 0)) if before else "-", str(after.get(op, 0)),
         _change(before.get(op, 0), after.get(op, 0)) if before else ""]
        for op in sorted(set(before) | set(after))
    ]
    return parts + [table(["op type", "before", "after", "change"], rows), ""]


LAYER_LIMIT = 15  # rows of the per-layer table (the rest are in metrics.json)


def _layer_errors(s: StageRecord) -> list[str]:
    found = s.layer_errors
    if found is None:
        return []
    if not found.layers:
        return [f"- per-layer error: not measured: {found.method}"]
    rows = [
        [str(rank), f"`{row.node}`", row.op_type, row.quantized_as, row.module or "-", sci(row.max_abs_error),
         f"{row.relative_error:.2e}", "-" if row.sqnr_db is None else f"{row.sqnr_db:.1f}", pct(row.top1_agreement)]
        for rank, row in enumerate(found.layers[:LAYER_LIMIT], start=1)
    ]
    whole = found.whole
    lines = [
        "",
        f"Per-layer error: {found.method}. `SQNR`: signal to quantization noise (higher is better); `top-1`: share "
        "of samples whose class is unchanged.",
        "",
        table(["#", "node", "op", "became", "torch module", "max abs err", "relative", "SQNR dB", "top-1"], rows),
    ]
    if whole is not None:
        sqnr = "-" if whole.sqnr_db is None else f"{whole.sqnr_db:.1f} dB"
        lines.append(f"\nThe whole file on the same samples: max abs err {sci(whole.max_abs_error)}, relative "
                     f"{whole.relative_error:.2e}, SQNR {sqnr}, top-1 {pct(whole.top1_agreement)}.")
    if len(found.layers) > LAYER_LIMIT:
        lines.append(f"\n{len(found.layers) - LAYER_LIMIT} more nodes in metrics.json.")
    return lines + [""]


def _change(old: int, new: int) -> str:
    return "" if old == new else f"{new - old:+d}"


def _notes(run: Run) -> list[str]:
    if not run.notes:
        return []
    lead = "Warnings and log lines the tools printed during the run (kept here, off the terminal):"
    return ["## Notes from the tools", "", lead, "", *[f"- {line}" for line in run.notes], ""]


def _provenance(run: Run) -> list[str]:
    env = run.environment
    rows = [[run.reference.weights, f"`{run.reference.sha256}`"]]
    rows += [[s.artifact.file, f"`{s.artifact.sha256}`"] for s in run.stages if s.artifact]
    versions = ", ".join(f"{k} {v}" for k, v in env.versions.items())
    t = run.time
    rest = t.total - t.validation - t.benchmarks
    took = f"the command took {t.total:.1f} s (validation {t.validation:.1f} s, benchmarks {t.benchmarks:.1f} s, the rest {rest:.1f} s)"
    if t.reused_from:
        took = f"the work was done by the run of {t.reused_from}: {took}; this rerun reused all of it"
    return [
        "## Provenance",
        "",
        table(["file", "sha256"], rows),
        "",
        f"- versions: {versions}",
        f"- machine: {env.cpu} (CPU type {env.cpu_type or 'unknown'}), {env.cores} cores, {env.threads} threads used, "
        f"{env.platform}"
        + "".join(f", {k}={v}" for k, v in env.timing_settings.items()),
        *([_split(env.split)] if env.split else []),
        f"- date: {run.started}; {took}",
        "",
        "Recipe:",
        "",
        "```yaml",
        run.recipe_text.rstrip(),
        "```",
    ]


def _split(split: SplitValidation) -> str:
    threads = f"{split.threads} thread" + ("s" if split.threads > 1 else "")
    return (
        f"- validation: {split.passes} passes split across {split.workers} Ray workers of {threads} each; the largest "
        f"worker peaked at {split.peak_worker_rss_mb:.0f} MB resident"
    )
