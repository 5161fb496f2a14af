"""PNG charts for the report, drawn from metrics.json data (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.runtimes import REFERENCE, TORCH_INT8


def inputs(data: dict[str, Any]) -> dict[str, Any]:
    """Everything the charts are drawn from: equal inputs draw equal charts (so a rerun may reuse them)."""
    bench = {k: v for k, v in (data.get("bench") or {}).items() if k not in ("cached", "measured_at")}
    sizes = [(s["stage"], (s["artifact"] or {}).get("bytes")) for s in data["stages"]]
    return {"recipe": data["recipe"], "reference": data["reference"]["bytes"], "sizes": sizes, "bench": bench}


def write(data: dict[str, Any], folder: Path) -> dict[str, str]:
    """Draw the charts the data allows; return {title: file name} for the report to embed."""
    import matplotlib

    matplotlib.use("Agg")
    bench = data.get("bench")
    stages = [s for s in data["stages"] if s["artifact"]]
    if not bench or not stages:
        return {}
    return {
        "Size and latency per stage": _size_latency(data, bench, stages, folder / "size_latency.png"),
        "Latency against sequence length": _by_length(bench, folder / "latency_by_length.png"),
    }


def _size_latency(data: dict[str, Any], bench: dict[str, Any], stages: list[dict[str, Any]], path: Path) -> str:
    import matplotlib.pyplot as plt

    case = bench["headline_case"]
    median = {t["contender"]: t["median_ms"] for t in bench["timings"] if t["case"] == case}
    bytes_of = {s["stage"]: s["artifact"]["bytes"] / 1e6 for s in stages}
    rows = [name for name in dict.fromkeys(t["contender"] for t in bench["timings"]) if name in median]
    artifacts = [name for name in rows if name not in (REFERENCE, TORCH_INT8)]
    names = [REFERENCE, TORCH_INT8] + artifacts
    sizes = [data["reference"]["bytes"] / 1e6, float("nan")] + [bytes_of[n.split(":", 1)[1]] for n in artifacts]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2 + 0.25 * max(0, len(names) - 6)))
    bars = left.barh(names, sizes, color=["#888888", "#bbbbbb"] + ["#3b75af"] * len(artifacts))
    left.bar_label(bars, fmt="%.2f MB", padding=3)
    left.set_xlabel("file size, MB (PyTorch int8: in memory only)")
    left.set_title("Size")
    left.invert_yaxis()
    bars = right.barh(names, [median[n] for n in names], color=["#888888", "#bbbbbb"] + ["#e1812c"] * len(artifacts))
    right.bar_label(bars, fmt="%.2f ms", padding=3)
    right.set_xlabel(f"median latency, ms (batch 1, length {case.split('_l')[1]}, {bench['threads']} threads)")
    right.set_title("Latency (lower is better)")
    right.invert_yaxis()
    for axis in (left, right):
        axis.margins(x=0.25)
    fig.suptitle(f"{data['recipe']}: size and latency per stage")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _by_length(bench: dict[str, Any], path: Path) -> str:
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for t in bench["by_length"]:
        series.setdefault(bench.get("chart_rows", {}).get(t["contender"], t["contender"]), []).append(
            (t["length"], t["median_ms"])
        )
    fig, axis = plt.subplots(figsize=(7.5, 4.5))
    for name, points in series.items():
        points.sort()
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    axis.set_xscale("log", base=2)
    lengths = sorted({t["length"] for t in bench["by_length"]})
    axis.set_xticks(lengths, [str(n) for n in lengths])
    axis.set_yscale("log")
    axis.set_xlabel("sequence length (batch 1)")
    axis.set_ylabel("median latency, ms")
    axis.set_title(f"Latency against sequence length ({bench['threads']} threads)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
