"""The typed records of a run: what each stage made and how each artifact checked out on each engine.

Plain frozen dataclasses; ``render.metrics`` turns them into metrics.json, nothing else reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.artifact import Artifact
from workbench.precision import Precision
from workbench.recipe import Recipe
from workbench.stages import Facts
from workbench.validate import BatchDependence, StageCheck


@dataclass(frozen=True)
class EngineCheck:
    """One artifact on one engine: what really ran and how it compared with the reference."""

    engine: str
    row: str  # "<engine>:<stage>"
    precision: str
    cached: bool
    check: StageCheck | None = None
    not_applicable: str | None = None  # the engine's reason for refusing the artifact
    padding: StageCheck | None = None  # padded mixed-length batches against the unpadded run
    batch_dependence: BatchDependence | None = None

    @property
    def passed(self) -> bool:
        if self.not_applicable is not None:
            return True  # shown, never a failure: the engine cannot run this artifact
        return self.check is not None and self.check.passed and (self.padding is None or self.padding.passed)


@dataclass(frozen=True)
class StageRecord:
    """One stage of one run: what went in, what came out, what it cost, how it checked out on each engine."""

    stage: str
    precision: Precision  # the stage's declared precision: picks thresholds and extra checks
    params: dict[str, Any]
    parent: str  # sha256 of the input artifact, or of the weights for the first stage
    artifact: Artifact | None
    facts: Facts | None
    seconds: float
    cached: bool
    checks: tuple[EngineCheck, ...] = ()
    error: str | None = None
    same_graph_as: str | None = None  # an earlier stage whose artifact computes exactly the same graph

    @property
    def passed(self) -> bool:
        ran = [c for c in self.checks if c.not_applicable is None]
        return self.error is None and bool(ran) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        if self.error is not None:
            return [self.error]
        out = [f"{c.row}: {f}" for c in self.checks if c.check is not None for f in c.check.failures]
        out += [
            f"{c.row}: padded batches: {f}" for c in self.checks if c.padding is not None for f in c.padding.failures
        ]
        if not any(c.not_applicable is None for c in self.checks):
            out.append("no engine could run the artifact")
        return out


@dataclass(frozen=True)
class Reference:
    """The fp32 torch model's facts and outputs on the evaluation set."""

    weights: Path
    weights_sha256: str
    weights_bytes: int
    accuracy: float
    samples: int
    seconds: float
    cached: bool
    padding: StageCheck | None = None  # the torch model itself on padded batches


@dataclass(frozen=True)
class RunResult:
    recipe: Recipe
    reference: Reference
    records: tuple[StageRecord, ...]
    environment: dict[str, str]
    threads: int
    started: str
    seconds: float
    validation_seconds: float
    skipped: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return all(record.passed for record in self.records) and not self.skipped
