"""The report's speed section, rendered from the ``bench`` part of metrics.json (no measuring here)."""

from __future__ import annotations

from typing import Any

from workbench.render.markdown import table as _table
from workbench.runtimes import REFERENCE, TORCH_INT8


def rows(bench: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """A row per contender: latency cases as median (p90) ms, the throughput case as samples/s, speed-ups."""
    cases = bench["cases"]
    by = {(t["contender"], t["case"]): t for t in bench["timings"]}
    contenders = list(dict.fromkeys(t["contender"] for t in bench["timings"]))
    header = ["row"]
    for c in cases:
        header.append(f"b{c['batch']} l{c['length']} " + ("ms median (p90)" if c["batch"] == 1 else "samples/s"))
    header += [f"x {c['name']}" for c in cases]
    int8 = bench.get("speedup_vs_pytorch_int8") or {}
    headline = bench.get("headline_case")
    if int8 and headline:
        header.append(f"x {TORCH_INT8} {headline}")
    header.append("ran as")
    table = []
    for name in contenders:
        row = [name]
        for c in cases:
            t = by[(name, c["name"])]
            row.append(f"{t['median_ms']:.2f} ({t['p90_ms']:.2f})" if c["batch"] == 1 else f"{t['samples_per_s']:.0f}")
        row += [f"{bench['speedup_vs_pytorch_fp32'][name][c['name']]:.2f}x" for c in cases]
        if int8 and headline:
            row.append(f"{int8[name][headline]:.2f}x" if headline in int8.get(name, {}) else "-")
        row.append(bench["precisions"][name])
        table.append(row)
    return header, table


def section(data: dict[str, Any]) -> list[str]:
    bench = data.get("bench")
    if not bench:
        return ["## Speed", "", "Not measured in this run (`--no-bench` or `bench: {enabled: false}`).", ""]
    header, table = rows(bench)
    runs = sorted({t["runs"] for t in bench["timings"]})
    unstable = sorted({f"{t['contender']} {t['case']}" for t in bench["timings"] if not t["stable"]})
    when = (
        f"Cached: measured {bench['measured_at']} on this machine with the same artifacts, engines, threads, "
        "cases and budget (`--rebench` measures again). "
        if bench.get("cached")
        else ""
    )
    parts = [
        "## Speed",
        "",
        when + f"Every contender ran with {bench['threads']} threads on the same seeded inputs, timed in alternating "
        f"blocks in this run ({runs[0]}-{runs[-1]} timed runs each after untimed warm-up calls, up to "
        f"{bench['budget_seconds']:g} s per case). `x` is PyTorch fp32's median over the contender's.",
        "",
        _table(header, table),
        "",
    ]
    for row, same in (bench.get("aliases") or {}).items():
        parts.append(f"- {row}: the same graph as {same} on the same engine: timed once, shown on both rows")
    for case in bench["cases"]:
        timed = [t for t in bench["timings"] if t["case"] == case["name"]]
        best = min(timed, key=lambda t: t["median_ms"])
        parts.append(f"- fastest at {case['name']}: **{best['contender']}** ({best['median_ms']:.2f} ms median)")
    parts.append("")
    if unstable:
        parts += [f"Medians not yet stable within 2% when the budget ran out: {', '.join(unstable)}.", ""]
    for title, name in (data.get("charts") or {}).items():
        parts += [f"![{title}]({name})", ""]
    parts += _tuning(bench.get("tuning")) + _profile(bench)
    return parts


def _tuning(tuning: dict[str, Any] | None) -> list[str]:
    if not tuning:
        return []
    rows = []
    for trial in tuning["trials"]:
        o = trial["options"]
        chosen = "chosen" if trial == tuning["best"] else ""
        rows.append(
            [
                str(o["intra_op_num_threads"]),
                o["graph_optimization_level"],
                o["execution_mode"],
                f"{trial['median_ms']:.3f}",
                "yes" if trial["identical"] else "no",
                chosen,
            ]
        )
    return [
        f"### Session tuning ({tuning['row']}, {tuning['case']})",
        "",
        f"Fastest configuration with outputs identical to the default: {tuning['gain']:.2f}x the default's "
        f"speed; saved beside the artifact as `{tuning['stage']}.onnx.session.json` "
        "(load it with `workbench.timing.tune.tuned_session(path)`).",
        "",
        _table(["intra-op threads", "graph optimization", "execution mode", "median ms", "identical", ""], rows),
        "",
    ]


def _profile(bench: dict[str, Any]) -> list[str]:
    profile = bench.get("profile")
    if not profile:
        return []
    case = profile["case"]
    medians = {t["contender"]: t["median_ms"] for t in bench["timings"] if t["case"] == case}
    length = int(case.split("_l")[1])
    final = profile["row"]
    shares = ", ".join(f"{op} {share:.1%}" for op, share in list(profile["op_share"].items())[:4])
    lines = [
        f"### Where the time goes ({final}, {case})",
        "",
        f"- onnxruntime's profiler: {shares} of node time.",
        f"- per token: {final} {1000 * medians[profile['row']] / length:.1f} us, PyTorch fp32 "
        f"{1000 * medians[REFERENCE] / length:.1f} us, "
        f"PyTorch int8 {1000 * medians[TORCH_INT8] / length:.1f} us.",
    ]
    macs = profile.get("lstm_macs_per_token")
    if macs:
        lines[-1] = lines[-1][:-1] + (
            " (an LSTM's steps run one after another, so batch 1 cannot use both cores fully)."
        )
    if macs:
        rates = []
        for case in bench["cases"]:
            timed = {t["contender"]: t for t in bench["timings"] if t["case"] == case["name"]}
            work = macs * case["batch"] * case["length"]
            rates.append(
                f"{case['name']}: "
                + ", ".join(
                    f"{name} {work / (timed[name]['median_ms'] / 1000) / 1e9:.0f}"
                    for name in (REFERENCE, TORCH_INT8, final)
                )
            )
        lines.append(
            f"- LSTM arithmetic rate, GMAC/s ({macs:,} multiply-adds per token and sample): " + "; ".join(rates) + "."
        )
    return lines + [""]
