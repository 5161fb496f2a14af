"""``workbench compare``: one table across the report folders of several runs, with the change between them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.errors import InputError
from workbench.runtimes import REFERENCE


def load(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json" if folder.is_dir() else folder
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no metrics.json here; give a report folder written by `workbench run`") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read run metrics: {exc}") from None


def _figures(run: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """stage -> the figures compared, for one run (PyTorch references included when benchmarked)."""
    bench = run.get("bench") or {}
    case = bench.get("headline_case")
    latency = {t["contender"]: t["median_ms"] for t in bench.get("timings", []) if t["case"] == case}
    speedup = {name: cases.get(case) for name, cases in bench.get("speedup_vs_pytorch_fp32", {}).items()}
    ref = run["reference"]
    out = {
        REFERENCE: {
            "bytes": ref["bytes"],
            "share": None,
            "accuracy": ref["accuracy"],
            "agreement": 1.0,
            "latency_ms": latency.get(REFERENCE),
            "speedup": speedup.get(REFERENCE),
        }
    }
    for s in run["stages"]:
        art = s["artifact"] or {}
        for e in s["engines"]:
            chk = e["check"] or {}
            out[e["row"]] = {
                "bytes": art.get("bytes"),
                "share": art.get("share_of_fp32"),
                "accuracy": chk.get("accuracy"),
                "agreement": chk.get("agreement"),
                "latency_ms": latency.get(e["row"]),
                "speedup": speedup.get(e["row"]),
            }
    return out


FIGURES = (
    ("bytes", "{:,.0f}"),
    ("share", "{:.1%}"),
    ("accuracy", "{:.2%}"),
    ("agreement", "{:.2%}"),
    ("latency_ms", "{:.2f} ms"),
    ("speedup", "{:.2f}x"),
)


def table(folders: list[Path]) -> tuple[list[str], list[list[str]]]:
    """Rows: (stage, figure); columns: each run, then the change from the first run to the last."""
    runs = [load(folder) for folder in folders]
    names = [
        f"{run['recipe']} ({folder.name})" if run["recipe"] != folder.name else run["recipe"]
        for run, folder in zip(runs, folders)
    ]
    figures = [_figures(run) for run in runs]
    stages = list(dict.fromkeys(stage for f in figures for stage in f))
    header = ["stage", "figure", *names, f"change {names[0]} -> {names[-1]}"]
    cases = {(run.get("bench") or {}).get("headline_case") for run in runs} - {None}
    if len(cases) > 1:
        raise InputError(
            f"the runs timed different headline cases ({', '.join(sorted(cases))}); latencies would not compare"
        )
    rows = []
    for stage in stages:
        for key, fmt in FIGURES:
            values = [f.get(stage, {}).get(key) for f in figures]
            if all(v is None for v in values):
                continue
            cells = ["-" if v is None else fmt.format(v) for v in values]
            first, last = values[0], values[-1]
            change = "-" if first is None or last is None else _change(key, first, last, fmt)
            label = f"latency {next(iter(cases))}" if key == "latency_ms" and cases else key.replace("_ms", "")
            rows.append([stage, label, *cells, change])
    return header, rows


def _change(key: str, first: float, last: float, fmt: str) -> str:
    if key in ("bytes", "latency_ms") and first:
        return f"{last / first - 1:+.1%}"
    if key in ("accuracy", "agreement", "share"):
        return f"{100 * (last - first):+.2f} points"
    return f"{last - first:+.2f}x" if key == "speedup" else fmt.format(last - first)
