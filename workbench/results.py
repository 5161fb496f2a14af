"""The typed run model: what each stage made, how it checked out on every engine, how fast it ran.

One pydantic model of a run is the contract between computing and rendering: ``report.md``, the terminal,
``compare``, charts and the benchmark scripts read it; ``metrics.json`` is its JSON dump (``Run.dump``)
with a schema version, read back with ``Run.load``; ``python -m workbench schema`` prints its JSON Schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializeAsAny,
    WithJsonSchema,
    computed_field,
    model_validator,
)

from workbench.decide.sensitivity import Sensitivity
from workbench.decide.ship import Decision
from workbench.feeds import InputSpec
from workbench.precision import PRECISIONS, Accept, Precision
from workbench.ratio import Ratio
from workbench.runtimes import REFERENCE
from workbench.stages import REGISTRY, Facts
from workbench.textdata import DataFacts

SCHEMA_VERSION: Final = 1


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _without_computed(cls, data: Any) -> Any:
        """A dump holds the computed fields too; reading it back recomputes them."""
        if isinstance(data, dict) and cls.model_computed_fields:
            return {k: v for k, v in data.items() if k not in cls.model_computed_fields}
        return data


def _precision(value: Any) -> Precision:
    if isinstance(value, Precision):
        return value
    if value not in PRECISIONS:
        raise ValueError(f"unknown precision {value!r}; known: {', '.join(PRECISIONS)}")
    return PRECISIONS[value]


PrecisionField = Annotated[
    Precision,
    PlainValidator(_precision),
    PlainSerializer(lambda p: p.name, return_type=str),
    WithJsonSchema({"type": "string", "description": "a registered precision, e.g. fp32 or int8"}),
]


class LooseFacts(Facts):
    """Facts of a stage this process has not registered (a metrics.json read back elsewhere): kept as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)


# ---- checks -------------------------------------------------------------------------------------------------


class Comparison(Record):
    """A candidate's logits against the reference's on the same samples: numbers, no verdict."""

    samples: int
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float
    rtol: float
    max_excess: float  # max(|diff| - rtol * |reference|): passes an absolute limit L when <= L
    agreement: float  # share of samples whose top-1 class equals the reference's
    accuracy: float
    reference_accuracy: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy_drop(self) -> float:
        return self.reference_accuracy - self.accuracy


class Check(Record):
    """A comparison judged against thresholds; every miss collected."""

    comparison: Comparison
    accept: Accept
    failures: tuple[str, ...]  # each: the figure, the limit

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return not self.failures

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rule(self) -> str:
        return self.accept.describe()

    def __bool__(self) -> bool:
        return self.passed


class BatchDependence(Record):
    """How much a sample's output moves with the other samples in its batch: alone against inside its batch."""

    samples: int
    max_abs_diff: float
    agreement: float


class EngineCheck(Record):
    """One artifact on one engine: what really ran and how it compared with the reference."""

    engine: str
    row: str  # "<engine>:<stage>"
    precision: str  # what the engine reports it ran
    cached: bool
    check: Check | None = None
    not_applicable: str | None = None  # the engine's reason for refusing the artifact
    error: str | None = None  # the engine failed while running it (the tool's own message and where)
    padding: Check | None = None  # padded mixed-length batches against the unpadded run
    batch_dependence: BatchDependence | None = None
    same_graph_as: str | None = None  # the row of an earlier stage with the same graph here: computed once

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        if self.not_applicable is not None:
            return True  # shown, never a failure: the engine cannot run this artifact
        if self.error is not None:
            return False
        return self.check is not None and self.check.passed and (self.padding is None or self.padding.passed)

    @property
    def ran(self) -> bool:
        return self.not_applicable is None and self.error is None


# ---- stages -------------------------------------------------------------------------------------------------


class ArtifactInfo(Record):
    """Facts about an ONNX file: hash, size with external data, op counts, inputs."""

    path: Path | None = Field(None, exclude=True)  # where this process has it (not in metrics.json)
    file: str
    sha256: str
    bytes: int  # the .onnx file plus every external data file it points to
    files: tuple[str, ...]
    op_counts: dict[str, int]
    inputs: dict[str, tuple[str | int, ...]]  # name -> dims (names for dynamic axes)
    graph_sha256: str  # what decides the outputs: the graph, the opsets it uses, its external data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ops(self) -> int:
        return sum(self.op_counts.values())


# a stage's own facts model (registered with the stage); in the schema an object whose keys depend on the stage
StageFacts = Annotated[
    SerializeAsAny[Facts],
    WithJsonSchema(
        {
            "type": "object",
            "description": "the stage's own facts (its Facts model): what the stage did, e.g. fusions or what was quantized",
            "properties": {"warnings": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": True,
        }
    ),
]


class StageRecord(Record):
    """One stage of one run: what went in, what came out, what it cost, how it checked out on each engine."""

    stage: str
    precision: PrecisionField  # the stage's declared precision: picks thresholds and extra checks
    params: dict[str, Any]
    parent: str  # sha256 of the input artifact, or of the weights for the first stage
    artifact: ArtifactInfo | None
    facts: StageFacts | None
    seconds: float
    cached: bool
    checks: tuple[EngineCheck, ...] = ()
    error: str | None = None
    same_graph_as: str | None = None  # an earlier stage whose artifact computes exactly the same graph
    share_of_export: float | None = None  # the artifact's bytes over the run's first (exported) artifact's
    layer_errors: Sensitivity | None = None  # a quantized artifact: the error each quantized node brings alone

    @model_validator(mode="before")
    @classmethod
    def _typed_facts(cls, data: Any) -> Any:
        """Facts read back from JSON become the stage's own facts model when this process registered the stage."""
        if isinstance(data, dict) and isinstance(data.get("facts"), dict):
            spec = REGISTRY.get(data.get("stage", ""))
            facts = {k: v for k, v in data["facts"].items() if not _is_computed(spec.facts, k)} if spec else None
            data = {**data, "facts": spec.facts.model_validate(facts) if spec else LooseFacts(**data["facts"])}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.ran) and all(c.passed for c in self.checks)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "FAILED"

    @property
    def ran(self) -> tuple[EngineCheck, ...]:
        """The engines that ran the artifact (not refused)."""
        return tuple(c for c in self.checks if c.not_applicable is None)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failures(self) -> tuple[str, ...]:
        if self.error is not None:
            return (self.error,)
        out = [f"{c.row}: {c.error}" for c in self.checks if c.error is not None]
        out += [f"{c.row}: {f}" for c in self.checks if c.check is not None for f in c.check.failures]
        out += [f"{c.row}: padded batches: {f}" for c in self.checks if c.padding is not None for f in c.padding.failures]
        if not self.ran:
            out.append("no engine could run the artifact")
        return tuple(out)


def _is_computed(model: type[BaseModel], name: str) -> bool:
    return name in model.model_computed_fields


class Reference(Record):
    """The fp32 torch model's facts and outputs on the evaluation set."""

    weights: str
    sha256: str
    bytes: int
    accuracy: float
    samples: int
    seconds: float
    cached: bool
    padding: Check | None = None  # the torch model itself on padded batches


# ---- speed --------------------------------------------------------------------------------------------------


class Case(Record):
    """A shape the contenders are timed at."""

    batch: int
    length: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def name(self) -> str:
        return f"b{self.batch}_l{self.length}"

    def __str__(self) -> str:
        return f"b{self.batch} l{self.length}"


class Timing(Record):
    contender: str
    case: Case
    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float
    stable: bool
    block_medians_ms: tuple[float, ...] = ()  # one per interleaved block: what intervals are drawn from

    @computed_field  # type: ignore[prop-decorator]
    @property
    def samples_per_s(self) -> float:
        return self.case.batch / (self.median_ms / 1000)


class Speedup(Ratio):
    """How many times faster ``row`` ran than ``baseline`` at ``case``, timed side by side."""

    row: str
    baseline: str
    case: Case


class Load(Record):
    """How busy the machine was while a case was timed: other processes' CPU and a reference workload's drift."""

    case: Case | None = None
    quiet: bool
    other_cpu_share: float  # cores other processes used, on average
    reference_drift: float  # the reference workload's upper-quartile block over its quiet time (1.0 = quiet)
    reason: str


class FastestAt(Record):
    """The fastest row at a case, claimed only when its interval against the runner-up excludes a tie."""

    case: Case
    winner: str | None  # None: not distinguishable from the runner-up
    runner_up: str | None
    lead: Ratio | None  # the runner-up's median over the leader's
    tied: tuple[str, ...] = ()


class Contender(Record):
    """One timed row of the speed table."""

    row: str
    engine: str
    stage: str | None  # None for the PyTorch references
    precision: PrecisionField  # declared (the stage's); the PyTorch int8 reference counts as int8
    ran_as: str  # what the engine reports it ran
    same_as: str | None = None  # the row of an earlier stage with the same graph on the same engine: timed once


class Trial(Record):
    options: dict[str, Any]
    label: str  # the options in the report's words
    median_ms: float
    identical: bool  # outputs bit-identical to the default configuration's
    block_medians_ms: tuple[float, ...] = ()


class Tuning(Record):
    row: str  # the runner tuned, e.g. onnxruntime:quantize_dynamic
    engine: str
    stage: str
    case: Case
    trials: tuple[Trial, ...]  # the default configuration first
    chosen: int  # index into trials: the default unless another is faster beyond its interval, on a quiet machine
    gain_interval: Ratio | None = None  # the fastest identical trial over the default
    load: Load | None = None
    claim: str = ""  # why the chosen trial was chosen, in the report's words

    @property
    def default(self) -> Trial:
        return self.trials[0]

    @property
    def best(self) -> Trial:
        return self.trials[self.chosen]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gain(self) -> float:
        return self.default.median_ms / self.best.median_ms


class Profile(Record):
    row: str
    engine: str
    case: Case
    op_share: dict[str, float]  # op type -> share of node time
    macs_per_token: int | None = None  # a recurrent model's multiply-adds per token and sample


class Bench(Record):
    """A run's benchmarks: every contender timed in one stretch, and what was derived from them."""

    threads: int
    budget_seconds: float
    cases: tuple[Case, ...]
    headline: Case  # batch 1 at the longest latency length: tuned, profiled, compared across runs
    contenders: tuple[Contender, ...]
    timings: tuple[Timing, ...]
    by_length: tuple[Timing, ...]
    chart_rows: dict[str, str] = {}  # row -> label in the length chart
    tunings: tuple[Tuning, ...] = ()  # per engine with a tuning hook: its final artifact
    profiles: tuple[Profile, ...] = ()  # per engine with a profiler: its final artifact
    speedups: tuple[Speedup, ...] = ()  # every row over each PyTorch reference at every case, with intervals
    fastest: tuple[FastestAt, ...] = ()
    loads: tuple[Load, ...] = ()  # one per case timed
    measured_at: str
    measure_seconds: float
    cached: bool = False

    def timing(self, row: str, case: Case) -> Timing | None:
        return next((t for t in self.timings if t.contender == row and t.case == case), None)

    def speedup(self, row: str, case: Case, baseline: str = REFERENCE) -> Ratio | None:
        """``baseline``'s median over ``row``'s at ``case``, with its interval."""
        stored = next((s for s in self.speedups if (s.row, s.case, s.baseline) == (row, case, baseline)), None)
        if stored is not None:
            return stored
        base, this = self.timing(baseline, case), self.timing(row, case)
        if base is None or this is None:
            return None
        return ratio(base, this)

    @property
    def quiet(self) -> bool:
        """Quiet throughout: every case, the length chart and every tuning stretch."""
        return all(load.quiet for load in self._all_loads)

    @property
    def busy_reasons(self) -> tuple[str, ...]:
        return tuple(f"{load.case}: {load.reason}" if load.case else load.reason for load in self._all_loads if not load.quiet)

    @property
    def _all_loads(self) -> tuple[Load, ...]:
        return self.loads + tuple(t.load for t in self.tunings if t.load is not None)

    @property
    def rows(self) -> tuple[str, ...]:
        return tuple(c.row for c in self.contenders)


def ratio(base: Timing, this: Timing) -> Ratio:
    """``base``'s median over ``this``'s, with the paired bootstrap interval over their blocks when both have them."""
    if not base.block_medians_ms or not this.block_medians_ms:
        return Ratio(value=base.median_ms / this.median_ms)
    from workbench.timing.stats import ratio_interval

    interval = ratio_interval(base.block_medians_ms, this.block_medians_ms)  # value: the ratio of block medians
    return Ratio(value=interval.estimate, low=interval.low, high=interval.high)


# ---- the run ------------------------------------------------------------------------------------------------


class SplitValidation(Record):
    """Validation passes split across Ray workers (``run --ray``)."""

    workers: int
    threads: int  # each worker's
    passes: int  # passes the workers computed (a padded pass counts as one; the rest came from the cache)
    peak_worker_rss_mb: float  # the largest peak resident memory of a worker


class Environment(Record):
    versions: dict[str, str]  # tool -> version ("unknown" when it cannot be read)
    cpu: str
    cpu_type: str = ""  # the best of workbench.machines.TYPES this CPU's flags support
    cores: int
    threads: int
    platform: str
    timing_settings: dict[str, str] = {}  # environment.TIMING_VARIABLES that were set
    split: SplitValidation | None = None  # validation passes computed by Ray workers


class RuntimeInfo(Record):
    engine: str
    params: dict[str, Any]


class TimeSplit(Record):
    """What the command took; a rerun that reused the work keeps the time of the run that did it."""

    total: float
    validation: float
    benchmarks: float
    reused_from: str | None = None  # when the figures come from an earlier run: the date it ran


class Run(Record):
    """One ``workbench run``: the reference, each stage on each engine, the benchmarks, the environment."""

    schema_version: Literal[1] = SCHEMA_VERSION
    recipe: str
    recipe_text: str
    started: str
    time: TimeSplit
    reference: Reference
    stages: tuple[StageRecord, ...]
    skipped: tuple[str, ...] = ()
    skip_reason: str | None = None
    environment: Environment
    inputs: tuple[InputSpec, ...]
    runtimes: tuple[RuntimeInfo, ...]
    data: dict[str, Any]
    notes: tuple[str, ...] = ()
    bench: Bench | None = None
    charts: dict[str, str] = {}  # title -> file name beside report.md
    data_facts: DataFacts | None = None  # the evaluation set: size, resolution, classes, truncation, coarse thresholds
    decision: Decision | None = None  # what to ship per target, and the search's trials (decide/ship.py)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return all(record.passed for record in self.stages) and not self.skipped

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "FAILED"

    def record(self, stage: str) -> StageRecord:
        return next(r for r in self.stages if r.stage == stage)

    def dump(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def load(cls, text: str) -> Run:
        return cls.model_validate_json(text)

    @classmethod
    def schema_text(cls) -> str:
        import json

        return json.dumps(cls.model_json_schema(mode="serialization"), indent=2) + "\n"
