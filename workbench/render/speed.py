"""The report's speed section, rendered from the run model's ``Bench`` (no measuring here)."""

from __future__ import annotations

from workbench.render.markdown import table
from workbench.results import Bench, Case, Run, Tuning
from workbench.runtimes import REFERENCE, TORCH_INT8

LEGEND = (
    "`b1 l256`: batch 1, sequence length 256. Latency columns: median (90th percentile) milliseconds per call; "
    "the throughput column: samples per second (higher is better). `x PyTorch fp32`: how many times faster than "
    "PyTorch fp32 at the same case (its median block time over the row's; above 1: faster), with the 95% interval "
    "of a paired bootstrap over the interleaved blocks in brackets. `x PyTorch int8`: the same against PyTorch's "
    "own dynamic int8 (torch.ao quantize_dynamic) at the headline case. `ran as`: the precision the engine ran."
)


def _cell(bench: Bench, row: str, case: Case) -> str:
    t = bench.timing(row, case)
    if t is None:
        return "-"
    return f"{t.median_ms:.2f} ({t.p90_ms:.2f})" if case.batch == 1 else f"{t.samples_per_s:.0f}"


def _ratio(bench: Bench, row: str, case: Case, baseline: str) -> str:
    r = bench.speedup(row, case, baseline)
    return "-" if r is None else str(r)


def load_lines(bench: Bench) -> list[str]:
    """The machine's load while timing, said first: figures taken under load are flagged, not cached, not tuned on."""
    if bench.quiet:
        worst = max((load.other_cpu_share for load in bench.loads), default=0.0)
        return [f"The machine was quiet while timing (other processes used at most {worst:.2f} cores in any case)."]
    return [
        "**The machine was busy while timing: these figures are not reliable.** They are not cached as clean (the "
        "next run measures again, unless `bench.cache_when_busy` keeps them) and no tuning choice was saved. What "
        "showed it:",
        "",
        *[f"- {reason}" for reason in bench.busy_reasons],
    ]


def _fastest(bench: Bench, case: Case) -> str:
    found = next((f for f in bench.fastest if f.case == case), None)
    if found is None:
        return ""
    if found.winner is None:
        return f"- fastest at {case}: not distinguishable between {', '.join(found.tied)} ({found.lead})"
    t = bench.timing(found.winner, case)
    figure = "" if t is None else (f"{t.median_ms:.2f} ms median" if case.batch == 1 else f"{t.samples_per_s:.0f} samples/s")
    lead = f", {found.lead} faster than {found.runner_up}" if found.runner_up else ""
    return f"- fastest at {case}: **{found.winner}** ({figure}{lead})"


def rows(bench: Bench, baseline: str = REFERENCE) -> tuple[list[str], list[list[str]]]:
    """A row per contender in stage order: latency cases, the throughput case, speed-ups, what ran."""
    header = ["row"]
    for c in bench.cases:
        header.append(f"{c} " + ("ms" if c.batch == 1 else "samples/s"))
    named = "PyTorch fp32" if baseline == REFERENCE else baseline
    header += [f"x {named} {c}" for c in bench.cases]
    with_int8 = any(c.row == TORCH_INT8 for c in bench.contenders)
    if with_int8:
        header.append(f"x PyTorch int8 {bench.headline}")
    header.append("ran as")
    table_rows = []
    for contender in bench.contenders:
        row = [contender.row]
        row += [_cell(bench, contender.row, c) for c in bench.cases]
        row += [_ratio(bench, contender.row, c, baseline) for c in bench.cases]
        if with_int8:
            row.append(_ratio(bench, contender.row, bench.headline, TORCH_INT8))
        row.append(contender.ran_as)
        table_rows.append(row)
    return header, table_rows


def section(run: Run, charts: dict[str, str]) -> list[str]:
    bench = run.bench
    if bench is None:
        return ["## Speed", "", "Not measured in this run (`--no-bench` or `bench: {enabled: false}`).", ""]
    header, table_rows = rows(bench)
    runs = sorted({t.runs for t in bench.timings})
    unstable = sorted({f"{t.contender} {t.case}" for t in bench.timings if not t.stable})
    when = (
        f"Cached: measured {bench.measured_at} on this machine with the same artifacts, engines, threads, cases "
        "and budget (`--rebench` measures again). "
        if bench.cached
        else ""
    )
    parts = [
        "## Speed",
        "",
        *load_lines(bench),
        "",
        when + f"Every contender ran with {bench.threads} threads on the same seeded inputs, timed in alternating "
        f"blocks in this run ({runs[0]}-{runs[-1]} timed runs each after untimed warm-up calls, up to "
        f"{bench.budget_seconds:g} s per case).",
        "",
        table(header, table_rows),
        "",
        LEGEND,
        "",
    ]
    for c in bench.contenders:
        if c.same_as:
            parts.append(f"- {c.row}: the same graph as {c.same_as} on the same engine: timed once, shown on both rows")
    parts += [line for line in (_fastest(bench, case) for case in bench.cases) if line]
    parts.append("")
    if unstable:
        parts += [
            f"Not stable (its turns' medians spread more than 1.25x): {', '.join(unstable)}.",
            "",
        ]
    for title, name in charts.items():
        parts += [f"![{title}]({name})", ""]
    for tuning in bench.tunings:
        parts += _tuning(bench, tuning)
    parts += _profiles(bench)
    return parts


def _tuning(bench: Bench, tuning: Tuning) -> list[str]:
    rows = [
        [trial.label, f"{trial.median_ms:.3f}", "yes" if trial.identical else "no",
         ", ".join(w for w, on in (("default", i == 0), ("chosen", i == tuning.chosen)) if on)]
        for i, trial in enumerate(tuning.trials)
    ]
    table_figure = bench.timing(tuning.row, tuning.case)
    differ = (
        f" The speed table's figure for this row ({table_figure.median_ms:.3f} ms) was taken in the suite's own "
        "turns beside the other contenders; these were timed against each other only, so the two differ by the "
        "machine's drift between the two stretches."
        if table_figure is not None
        else ""
    )
    saved = (  # as commands/run.py saves it: only from a run quiet throughout, not just while this row was tuned
        f"saved beside the artifact as `{tuning.stage}.onnx.session.json` (load it with "
        "`workbench.runtimes.load_tuned(path)`)"
        if bench.quiet
        else "not saved, since the machine was busy during the benchmarks"
    )
    return [
        f"### Tuning ({tuning.row}, {tuning.case})",
        "",
        f"Chosen: {tuning.claim}; {saved}. A trial is chosen over the default only when its outputs are identical "
        f"and its speed-up's interval excludes a tie, on a quiet machine.{differ}",
        "",
        table(["options", "median ms", "identical outputs", ""], rows),
        "",
    ]


def _profiles(bench: Bench) -> list[str]:
    out: list[str] = []
    for profile in bench.profiles:
        case = profile.case
        medians = {t.contender: t.median_ms for t in bench.timings if t.case == case}
        shares = ", ".join(f"{op} {share:.1%}" for op, share in list(profile.op_share.items())[:4])
        per_token = ", ".join(
            f"{name} {1000 * medians[name] / case.length:.1f} us" for name in (profile.row, REFERENCE, TORCH_INT8)
            if name in medians
        )
        lines = [
            f"### Where the time goes ({profile.row}, {case})",
            "",
            f"- the engine's profiler: {shares} of node time.",
            f"- per token: {per_token}.",
        ]
        if profile.macs_per_token:
            lines[-1] = lines[-1][:-1] + " (an LSTM's steps run one after another, so batch 1 cannot use all cores)."
            rates = []
            for c in bench.cases:
                timed = {t.contender: t for t in bench.timings if t.case == c}
                work = profile.macs_per_token * c.batch * c.length
                rates.append(f"{c}: " + ", ".join(
                    f"{name} {work / (timed[name].median_ms / 1000) / 1e9:.0f}"
                    for name in (REFERENCE, TORCH_INT8, profile.row) if name in timed
                ))
            lines.append(
                f"- LSTM arithmetic rate, GMAC/s ({profile.macs_per_token:,} multiply-adds per token and sample): "
                + "; ".join(rates) + "."
            )
        out += lines + [""]
    return out
