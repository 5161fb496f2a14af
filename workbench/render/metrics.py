"""Typed results -> metrics.json: every figure of a run, the one source report.md and the terminal render from."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from workbench.results import EngineCheck, RunResult
from workbench.runtimes import REFERENCE
from workbench.timing.suite import BenchResult
from workbench.validate import StageCheck


def _check(check: StageCheck | None) -> dict[str, Any] | None:
    return None if check is None else check.to_dict()


def _engine(c: EngineCheck) -> dict[str, Any]:
    return {
        "engine": c.engine,
        "row": c.row,
        "precision": c.precision,
        "cached": c.cached,
        "not_applicable": c.not_applicable,
        "passed": c.passed,
        "check": _check(c.check),
        "padding": _check(c.padding),
        "batch_dependence": asdict(c.batch_dependence) if c.batch_dependence else None,
    }


def metrics(
    result: RunResult,
    bench: BenchResult | None,
    artifacts: dict[str, Path],
    *,
    notes: list[str] = (),  # type: ignore[assignment]
    timings: dict[str, float] | None = None,
    charts: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The run as plain JSON-able data."""
    fp32 = next((r.artifact.bytes for r in result.records if r.artifact is not None), None)
    ref = result.reference
    stages = []
    for record in result.records:
        art = record.artifact
        stages.append(
            {
                "stage": record.stage,
                "precision": record.precision.name,
                "verdict": "passed" if record.passed else "FAILED",
                "failures": record.failures,
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
                "facts": record.facts.model_dump(mode="json") if record.facts else {},
                "fact_lines": record.facts.lines() if record.facts else [],
                "same_graph_as": record.same_graph_as,
                "engines": [_engine(c) for c in record.checks],
            }
        )
    return {
        "recipe": result.recipe.name,
        "verdict": "passed" if result.passed else "FAILED",
        "started": result.started,
        "seconds": round((timings or {}).get("total", result.seconds), 3),
        "time": {k: round(v, 3) for k, v in (timings or {}).items()},
        "reference": {
            "stage": REFERENCE,
            "weights": ref.weights.name,
            "sha256": ref.weights_sha256,
            "bytes": ref.weights_bytes,
            "accuracy": ref.accuracy,
            "samples": ref.samples,
            "cached": ref.cached,
            "padding": _check(ref.padding),
        },
        "inputs": [i.model_dump() for i in result.recipe.model.inputs],
        "runtimes": [{"engine": r.name, **r.params.model_dump(mode="json")} for r in result.recipe.runtimes],
        "data": result.recipe.settings.data.model_dump(),
        "stages": stages,
        "skipped": list(result.skipped),
        "environment": result.environment,
        "notes": list(notes),
        "bench": bench.to_dict() if bench else None,
        "charts": charts or {},
    }
