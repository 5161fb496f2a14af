"""PNG charts for the report, drawn from the run model (matplotlib, no display needed).

Figures that span more than 10x are drawn on a log scale, so a slow reference does not flatten the rest;
labels are kept inside the figure (``bbox_inches="tight"`` plus room for bar labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.results import Bench, Run
from workbench.runtimes import REFERENCE, TORCH_INT8

SPREAD_FOR_LOG = 10.0


def inputs(run: Run) -> dict[str, Any]:
    """Everything the charts are drawn from: equal inputs draw equal charts (so a rerun may reuse them)."""
    bench = run.bench.model_dump(mode="json", exclude={"cached", "measured_at", "measure_seconds"}) if run.bench else None
    sizes = [(s.stage, s.artifact.bytes if s.artifact else None) for s in run.stages]
    return {"recipe": run.recipe, "reference": run.reference.bytes, "sizes": sizes, "bench": bench}


def write(run: Run, folder: Path) -> dict[str, str]:
    """Draw the charts the run allows; return {title: file name} for the report to embed."""
    import matplotlib

    matplotlib.use("Agg")
    if run.bench is None or not any(s.artifact for s in run.stages):
        return {}
    return {
        "Size and latency per stage": _size_latency(run, run.bench, folder / "size_latency.png"),
        "Latency against sequence length": _by_length(run.bench, folder / "latency_by_length.png"),
    }


def _log_if_spread(axis: Any, values: list[float]) -> bool:
    finite = [v for v in values if v == v and v > 0]
    if finite and max(finite) / min(finite) > SPREAD_FOR_LOG:
        axis.set_xscale("log")
        return True
    return False


def _size_latency(run: Run, bench: Bench, path: Path) -> str:
    import matplotlib.pyplot as plt

    case = bench.headline
    median = {t.contender: t.median_ms for t in bench.timings if t.case == case}
    bytes_of = {s.stage: s.artifact.bytes / 1e6 for s in run.stages if s.artifact}
    artifacts = [c for c in bench.contenders if c.stage is not None and c.row in median]
    names = [REFERENCE, TORCH_INT8] + [c.row for c in artifacts]
    sizes = [run.reference.bytes / 1e6, float("nan")] + [bytes_of[c.stage] for c in artifacts if c.stage]
    latencies = [median.get(n, float("nan")) for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2 + 0.3 * max(0, len(names) - 6)))
    bars = left.barh(names, sizes, color=["#888888", "#bbbbbb"] + ["#3b75af"] * len(artifacts))
    left.bar_label(bars, fmt="%.2f MB", padding=3)
    left.set_xlabel("file size, MB (PyTorch int8: in memory only)")
    left.set_title("Size")
    bars = right.barh(names, latencies, color=["#888888", "#bbbbbb"] + ["#e1812c"] * len(artifacts))
    right.bar_label(bars, fmt="%.2f ms", padding=3)
    log = _log_if_spread(right, latencies)
    right.set_xlabel(f"median latency, ms{' (log scale)' if log else ''}\nbatch 1, length {case.length}, "
                     f"{bench.threads} threads")
    right.set_title("Latency (lower is better)")
    for axis in (left, right):
        axis.invert_yaxis()
        axis.margins(x=0.6 if axis.get_xscale() == "log" else 0.35)
    fig.suptitle(f"{run.recipe}: size and latency per stage")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _by_length(bench: Bench, path: Path) -> str:
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for t in bench.by_length:
        series.setdefault(bench.chart_rows.get(t.contender, t.contender), []).append((t.case.length, t.median_ms))
    fig, axis = plt.subplots(figsize=(7.5, 4.5))
    for name, points in series.items():
        points.sort()
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    axis.set_xscale("log", base=2)
    lengths = sorted({t.case.length for t in bench.by_length})
    axis.set_xticks(lengths, [str(n) for n in lengths])
    axis.set_yscale("log")
    axis.set_xlabel("sequence length (batch 1)")
    axis.set_ylabel("median latency, ms (log scale)")
    axis.set_title(f"Latency against sequence length ({bench.threads} threads)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name
