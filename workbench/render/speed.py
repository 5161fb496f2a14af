"""The report's speed section, rendered from the run model's ``Bench`` (no measuring here)."""

from __future__ import annotations

from workbench.render.markdown import table
from workbench.results import Bench, Case, Run, Tuning
from workbench.runtimes import REFERENCE, TORCH_INT8

LEGEND = (
    "`b1 l256`: batch 1, sequence length 256. Latency columns: median (90th percentile) milliseconds per call; "
    "the throughput column: samples per second (higher is better). `x PyTorch fp32`: PyTorch fp32's median over "
    "the row's, at the same case (above 1: faster than PyTorch). `ran as`: the precision the engine ran."
)


def _cell(bench: Bench, row: str, case: Case) -> str:
    t = bench.timing(row, case)
    if t is None:
        return "-"
    return f"{t.median_ms:.2f} ({t.p90_ms:.2f})" if case.batch == 1 else f"{t.samples_per_s:.0f}"


def _ratio(bench: Bench, row: str, case: Case, baseline: str) -> str:
    r = bench.speedup(row, case, baseline)
    if r is None:
        return "-"
    interval = f" [{r.low:.2f}-{r.high:.2f}]" if r.low is not None and r.high is not None else ""
    return f"{r.value:.2f}x{interval}"


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
    for case in bench.cases:
        timed = [t for t in bench.timings if t.case == case]
        best = min(timed, key=lambda t: t.median_ms)
        figure = f"{best.median_ms:.2f} ms median" if case.batch == 1 else f"{best.samples_per_s:.0f} samples/s"
        parts.append(f"- fastest at {case}: **{best.contender}** ({figure})")
    parts.append("")
    if unstable:
        parts += [f"Medians not yet stable within 2% when the budget ran out: {', '.join(unstable)}.", ""]
    for title, name in charts.items():
        parts += [f"![{title}]({name})", ""]
    for tuning in bench.tunings:
        parts += _tuning(bench, tuning)
    parts += _profiles(bench)
    return parts


def _tuning(bench: Bench, tuning: Tuning) -> list[str]:
    rows = [
        [trial.label, f"{trial.median_ms:.3f}", "yes" if trial.identical else "no",
         "chosen" if i == tuning.chosen else ("default" if i == 0 else "")]
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
    return [
        f"### Tuning ({tuning.row}, {tuning.case})",
        "",
        f"Fastest option set with outputs identical to the default: {tuning.gain:.2f}x the default's speed; saved "
        f"beside the artifact as `{tuning.stage}.onnx.session.json` (load it with "
        f"`workbench.runtimes.load_tuned(path)`).{differ}",
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
