"""Run a recipe's chain: the torch reference, each stage (or its cache entry), each artifact checked on every engine.

Produces typed records (``Validated``); knows nothing of ONNX internals (stages and engines do), of timing
or of rendering. Whatever a model or a tool does wrong becomes a failed row with the tool's own words:
an export or a stage that raises fails its stage, an engine that fails on an artifact fails its row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench import data, environment, machines, validate
from workbench.artifact import describe
from workbench.context import RunContext
from workbench.decide.sensitivity import Sensitivity
from workbench.errors import StageError, WorkbenchError, failure_text
from workbench.evaluation import Evaluation
from workbench.precision import FP32, Accept
from workbench.recipe import RuntimeConfig, StageConfig
from workbench.results import Check, EngineCheck, Reference, StageRecord
from workbench.runtimes import ENGINES, NotApplicable, row_name
from workbench.spread import RunnerSpec
from workbench.stages import REGISTRY, Source
from workbench.store.files import file_sha256, key

BATCH_DEPENDENCE_SAMPLES = 256  # quantized artifacts: this many samples are also run alone, one at a time
CALIBRATION_SPLIT = "calibration"


@dataclass(frozen=True)
class Validated:
    """What the pipeline computed: the reference, a record per stage that ran, the stages left out and why."""

    reference: Reference
    reference_logits: np.ndarray
    records: tuple[StageRecord, ...]
    skipped: tuple[str, ...]
    skip_reason: str | None
    seconds: float


def run(ctx: RunContext) -> Validated:
    """Every stage in order, each checked on every engine; stops at the first failure unless told otherwise."""
    started = time.perf_counter()
    reference, logits = _reference(ctx)
    records: list[StageRecord] = []
    parent_key, parent_sha, parent_path = ctx.model_key, reference.sha256, None
    graphs: dict[str, str] = {}  # graph sha256 -> the first stage that produced it
    shared: dict[str, Any] = {}  # check entry key -> its outputs, computed once per run
    skipped: tuple[str, ...] = ()
    reason = None
    stages = ctx.recipe.stages
    for index, config in enumerate(stages):
        ctx.progress.stage(config.name)
        source = Source(
            torch=ctx.source if parent_path is None else None, onnx=parent_path, calibration=_calibration(ctx)
        )
        record, parent_key, parent_path = _run_stage(ctx, config, source, parent_key, parent_sha)
        if (artifact := record.artifact) is not None:
            same = graphs.setdefault(artifact.graph_sha256, record.stage)
            shared_with = None if same == record.stage else same
            checks = tuple(
                _check_on(ctx, runtime, record, config.accept, logits, shared, shared_with)
                for runtime in ctx.recipe.runtimes
            )
            exported = next((r.artifact for r in records if r.artifact), artifact)
            record = record.model_copy(
                update={
                    "checks": checks,
                    "same_graph_as": shared_with,
                    "share_of_export": artifact.bytes / exported.bytes,
                    "layer_errors": _layer_errors(ctx, config, source, record, exported.path),
                }
            )
            parent_sha = artifact.sha256
        records.append(record)
        ctx.progress.done(config.name, "passed" if record.passed else "FAILED")
        if not record.passed and (record.artifact is None or not ctx.recipe.settings.continue_on_failure):
            skipped = tuple(c.name for c in stages[index + 1 :])
            reason = f"{config.name} failed" + ("" if record.artifact else " to produce an artifact")
            break
    return Validated(reference, logits, tuple(records), skipped, reason if skipped else None, time.perf_counter() - started)


def _reference(ctx: RunContext) -> tuple[Reference, np.ndarray]:
    ctx.progress.stage("reference")
    ev = ctx.evaluation
    t0 = time.perf_counter()

    def compute(scratch: Path) -> dict[str, Any]:
        ctx.progress.checkpoint("reference")
        spread = (ctx.spread, RunnerSpec(str(ctx.recipe.path), threads=ctx.spread.threads)) if ctx.spread else None
        ev.outputs(ctx.pool.reference(), scratch, ctx.progress.validating("reference", len(ev)), spread)
        return {}

    entry = key("reference", ctx.model_key, ev.key, ctx.versions["torch"])
    arrays, _, cached = _cached_arrays(ctx, entry, compute)
    logits = arrays["logits"]
    weights = ctx.recipe.resolve(ctx.recipe.model.weights)
    reference = Reference(
        weights=weights.name,
        sha256=ctx.source.metadata["weights_sha256"],
        bytes=weights.stat().st_size,
        accuracy=float(np.mean(logits.argmax(1) == ev.labels)),
        samples=len(ev),
        seconds=time.perf_counter() - t0,
        cached=cached,
        padding=_padding_check(arrays, logits, ev, FP32.accept),
    )
    ctx.progress.done("reference", f"accuracy {reference.accuracy:.2%}")
    return reference, logits


def _calibration(ctx: RunContext) -> Callable[[int], Any]:
    """Calibration batches for stages that calibrate: samples the evaluation set never holds."""

    def batches(n: int):
        ev = ctx.evaluation
        for batch in ev.calibration_batches(n):
            yield ev.feed.feeds(batch.tokens, batch.mask)

    return batches


def _padding_check(arrays: dict[str, np.ndarray], unpadded: np.ndarray, ev: Evaluation, accept: Accept) -> Check | None:
    if "padded" not in arrays:
        return None
    comparison = validate.compare(arrays["padded"], unpadded, ev.labels, rtol=accept.rtol or 0.0)
    return validate.judge(comparison, accept)


def _cached_arrays(
    ctx: RunContext, entry_key: str, compute: Callable[[Path], dict[str, Any]]
) -> tuple[dict[str, np.ndarray], dict[str, Any], bool]:
    """Arrays (the ``.npy`` files ``compute`` writes into its folder, read back as memory maps, so a set of any size
    is never held whole) and facts (what ``compute`` returns) from the cache, or computed and stored."""

    def fill(scratch: Path, facts: dict[str, Any]) -> None:
        facts.update(compute(scratch))

    folder, facts, was_cached = ctx.cache.fetch(entry_key, fill, force=ctx.force)
    return {p.stem: np.load(p, mmap_mode="r") for p in folder.glob("*.npy")}, facts, was_cached


def _layer_errors(
    ctx: RunContext, config: StageConfig, source: Source, record: StageRecord, exported: Path | None
) -> Sensitivity | None:
    """For a quantizing stage: each node it quantized, quantized alone the stage's way, against its input's logits
    on the first samples of the evaluation set (cached by both files, the samples and the code)."""
    spec = REGISTRY[config.name]
    settings = ctx.recipe.settings.layer_errors
    requantize, artifact, onnx_path = spec.requantize, record.artifact, source.onnx
    if requantize is None or not settings.enabled or artifact is None or onnx_path is None:
        return None
    from workbench.decide import sensitivity

    ev = ctx.evaluation
    samples = ev.head(settings.samples)
    entry = key(
        "layer_errors", artifact.sha256, file_sha256(onnx_path), ev.key, settings.samples,
        config.params.model_dump(mode="json"), ctx.versions, environment.source_sha256(sensitivity.layer_errors),
        ev.calibration_key if spec.calibrates else None,
    )

    def fill(scratch: Path, facts: dict[str, Any]) -> None:
        feeds = [ev.feed.feeds(b.tokens, b.mask) for b in data.batches(samples, max_batch=ev.batch_size)]
        result = sensitivity.layer_errors(
            onnx_path, feeds, int8_path=artifact.path, quantize=requantize(config.params, source),
            names_from=exported,
        )
        facts["sensitivity"] = result.model_dump(mode="json")

    try:
        _, facts, _ = ctx.cache.fetch(entry, fill, force=ctx.force)
    except MemoryError:
        raise
    except Exception as exc:  # an analysis that fails says so in the report; it does not fail the stage
        failed = failure_text(exc, "per-layer error", locate=True)
        return Sensitivity(layers=(), whole=None, samples=0, batches=0, method=failed)
    return Sensitivity.model_validate(facts["sensitivity"])


def _run_stage(
    ctx: RunContext, config: StageConfig, source: Source, parent_key: str, parent_sha: str
) -> tuple[StageRecord, str, Path | None]:
    spec = REGISTRY[config.name]
    params = config.params.model_dump(mode="json")
    data_key = ctx.evaluation.calibration_key if spec.calibrates else None
    stage_key = key(
        "stage", config.name, params, parent_key, ctx.versions, environment.source_sha256(spec.run), data_key
    )
    t0 = time.perf_counter()

    def fill(scratch: Path, facts: dict[str, Any]) -> None:
        made = spec.run(source, config.params, scratch / f"{config.name}.onnx")
        if not isinstance(made, spec.facts):
            raise TypeError(f"stage {config.name!r} returned {type(made).__name__}, not its {spec.facts.__name__}")
        facts.update(made.model_dump(mode="json", exclude_computed_fields=True))
        facts["seconds"] = time.perf_counter() - t0
        ctx.progress.checkpoint(f"stage:{config.name}")

    what = {"stage": config.name, "precision": config.precision, "params": params, "parent": parent_sha}

    def failed(error: str) -> tuple[StageRecord, str, None]:
        seconds = time.perf_counter() - t0
        record = StageRecord(**what, artifact=None, facts=None, seconds=seconds, cached=False, error=error)
        return record, stage_key, None

    try:
        folder, facts, cached = ctx.cache.fetch(stage_key, fill, force=ctx.force)
    except StageError as exc:
        return failed(str(exc))
    except (WorkbenchError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # the tool (or the user's model inside the exporter) failed: a failed row, not a crash
        return failed(failure_text(exc, f"{config.name} raised", locate=True))
    artifact = describe(folder / f"{config.name}.onnx")
    seconds = facts.pop("seconds", 0.0)
    record = StageRecord(
        **what, artifact=artifact, facts=spec.facts.model_validate(facts), seconds=seconds, cached=cached
    )
    # the next stage is keyed by this artifact's content, so an equal artifact reuses downstream work
    return record, key(stage_key, artifact.sha256), artifact.path


def _check_on(
    ctx: RunContext,
    runtime: RuntimeConfig,
    record: StageRecord,
    accept: Accept,
    reference_logits: np.ndarray,
    shared: dict[str, Any],
    shared_with: str | None,
) -> EngineCheck:
    """Check one artifact on one engine (cached by the artifact's graph, data, engine, its version and parameters;
    an artifact whose graph an earlier stage of this run already produced shares that stage's outputs)."""
    artifact = record.artifact
    assert artifact is not None and artifact.path is not None
    ev = ctx.evaluation
    row = row_name(runtime.name, record.stage)
    alone = record.precision.batch_dependence
    entry = key(
        "check",
        artifact.graph_sha256,
        ev.key,
        runtime.name,
        ENGINES[runtime.name].version(),
        runtime.params.model_dump(mode="json"),
        alone and BATCH_DEPENDENCE_SAMPLES,
        machines.cpu_type(),  # int8 kernels differ between CPU types (VNNI or not): so may the outputs
    )
    path = artifact.path

    def compute(scratch: Path) -> dict[str, Any]:
        try:
            runner = ctx.pool.artifact(runtime.name, runtime.params, record.stage, path)
        except NotApplicable as refusal:
            return {"not_applicable": str(refusal)}
        runner.check_inputs(ev.feed.names, path)
        ctx.progress.checkpoint(f"validate:{record.stage}")
        try:
            spread = None
            if ctx.spread:
                params = runtime.params.model_dump(mode="json")
                spread = ctx.spread, RunnerSpec(
                    str(ctx.recipe.path), runtime.name, params, str(path), artifact.sha256, row, ctx.spread.threads
                )
            ev.outputs(runner, scratch, ctx.progress.validating(row, len(ev)), spread)
            if alone:
                np.save(scratch / "alone.npy", validate.alone(runner, ev.head(BATCH_DEPENDENCE_SAMPLES), ev.feed))
        except validate.RunFailed as exc:
            for written in scratch.glob("*.npy"):  # outputs of the batches before the failure
                written.unlink()
            return {"error": str(exc), "precision": runner.precision}
        return {"precision": runner.precision}

    if entry not in shared:  # the same entry again in this run: the same graph on the same engine
        shared[entry] = _cached_arrays(ctx, entry, compute)
    arrays, facts, cached = shared[entry]
    same = row_name(runtime.name, shared_with) if shared_with else None
    base = {"engine": runtime.name, "row": row, "cached": cached, "same_graph_as": same}
    if "not_applicable" in facts:
        return EngineCheck(**base, precision="not run", not_applicable=facts["not_applicable"])
    if "error" in facts:
        return EngineCheck(**base, precision=facts["precision"], error=facts["error"])
    logits = arrays["logits"]
    comparison = validate.compare(logits, reference_logits, ev.labels, rtol=accept.rtol or 0.0)
    dependence = None
    if "alone" in arrays:
        dependence = validate.batch_dependence(logits[: len(arrays["alone"])], arrays["alone"])
    return EngineCheck(
        **base,
        precision=facts["precision"],
        check=validate.judge(comparison, accept),
        padding=_padding_check(arrays, logits, ev, accept),
        batch_dependence=dependence,
    )
