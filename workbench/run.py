"""Run a recipe: the torch reference, each stage (or its cache entry), each artifact validated on every engine.

Produces typed records; knows nothing of ONNX internals (stages and engines do), of timing or of markdown.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from workbench import environment, validate
from workbench.artifact import describe
from workbench.errors import StageError
from workbench.evaluation import Evaluation, evaluation_of
from workbench.precision import FP32, Accept
from workbench.recipe import Recipe, RuntimeConfig, StageConfig
from workbench.results import EngineCheck, Reference, RunResult, StageRecord
from workbench.runtimes import ENGINES, NotApplicable, Runner, row_name
from workbench.runtimes.pool import Pool
from workbench.stages import REGISTRY, Source, TorchSource
from workbench.store.cache import Cache
from workbench.store.files import key

CACHE_DIR = ".workbench-cache"
BATCH_DEPENDENCE_SAMPLES = 256  # int8 artifacts: this many samples are also run alone, one at a time
PAUSE_ENV = "WORKBENCH_TEST_PAUSE_AT"  # tests only: stop at a named point until a file appears (see pause())


class Progress:
    """What the run tells the terminal; the CLI gives a rich-backed one, tests a silent one."""

    def stage(self, name: str) -> None: ...
    def done(self, name: str, outcome: str) -> None: ...
    def validating(self, name: str, total: int) -> Callable[[int], None]:
        return lambda n: None


def pause(point: str) -> None:
    """Tests only: when ``WORKBENCH_TEST_PAUSE_AT`` names ``point``, write ``<dir>/<point>.reached`` and wait
    (up to 60 s) for ``<dir>/<point>.go``; the value is ``point=dir``. Lets a test kill or race a run at a
    known place instead of polling for it."""
    setting = os.environ.get(PAUSE_ENV, "")
    name, _, folder = setting.partition("=")
    if name != point or not folder:
        return
    (Path(folder) / f"{point}.reached").write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not (Path(folder) / f"{point}.go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def run(
    recipe: Recipe,
    source: TorchSource,
    model_key: str,
    pool: Pool,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Every stage in order, each validated on every engine; stops at the first failure unless told otherwise."""
    progress = progress or Progress()
    started = time.perf_counter()
    cache = Cache(recipe.root / CACHE_DIR)
    versions = environment.tool_versions()  # what the stages and the reference depend on (engines are keyed per check)
    ev = evaluation_of(recipe)

    progress.stage("reference")
    t0 = time.perf_counter()
    arrays, _, reference_cached = _cached_arrays(
        cache,
        key("reference", model_key, ev.key, versions["torch"]),
        force,
        lambda: _reference_arrays(pool.reference(), ev, progress.validating("reference", len(ev.samples))),
    )
    reference_logits = arrays["logits"]
    weights = recipe.resolve(recipe.model.weights)
    fp32_accept = FP32.accept
    reference = Reference(
        weights,
        source.metadata["weights_sha256"],
        weights.stat().st_size,
        float(np.mean(reference_logits.argmax(1) == ev.labels)),
        len(ev.samples),
        time.perf_counter() - t0,
        reference_cached,
        _padding_check(arrays, reference_logits, ev.labels, fp32_accept),
    )
    progress.done("reference", f"accuracy {reference.accuracy:.2%}")
    validation_s = time.perf_counter() - t0

    records: list[StageRecord] = []
    parent_key, parent_sha, parent_path = model_key, reference.weights_sha256, None
    skipped: tuple[str, ...] = ()
    graphs: dict[str, str] = {}  # graph sha256 -> the first stage that produced it
    shared: dict[str, Any] = {}  # check entry key -> its outputs, computed once per run
    for index, config in enumerate(recipe.stages):
        progress.stage(config.name)
        stage_source = Source(torch=source if parent_path is None else None, onnx=parent_path)
        record, parent_key, parent_path = _run_stage(
            config, stage_source, parent_key, parent_sha, cache, versions, force
        )
        if record.artifact is not None:
            t1 = time.perf_counter()
            checks = tuple(
                _check_on(runtime, record, config.accept, ev, reference_logits, pool, cache, force, progress, shared)
                for runtime in recipe.runtimes
            )
            validation_s += time.perf_counter() - t1
            same = graphs.setdefault(record.artifact.graph_sha256, record.stage)
            record = replace(record, checks=checks, same_graph_as=None if same == record.stage else same)
            parent_sha = record.artifact.sha256
        records.append(record)
        progress.done(config.name, "passed" if record.passed else "FAILED")
        if not record.passed and (record.artifact is None or not recipe.settings.continue_on_failure):
            skipped = tuple(c.name for c in recipe.stages[index + 1 :])
            break
    return RunResult(
        recipe,
        reference,
        tuple(records),
        environment.snapshot(pool.threads, recipe.runtimes),
        pool.threads,
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
        time.perf_counter() - started,
        validation_s,
        skipped,
    )


def _reference_arrays(runner: Runner, ev: Evaluation, advance: Callable[[int], None]) -> dict[str, np.ndarray]:
    pause("reference")
    return ev.outputs(runner, advance)


def _padding_check(arrays: dict[str, np.ndarray], unpadded: np.ndarray, labels: np.ndarray, accept: Accept):
    if "padded" not in arrays:
        return None
    comparison = validate.compare(arrays["padded"], unpadded, labels, rtol=accept.rtol or 0.0)
    return validate.judge(comparison, accept)


def _cached_arrays(
    cache: Cache, entry_key: str, force: bool, compute: Callable[[], dict[str, Any]]
) -> tuple[dict[str, np.ndarray], dict[str, Any], bool]:
    """Arrays (and facts: the ``facts`` entry of ``compute``'s result) from the cache, or computed and stored."""

    def fill(scratch: Path, facts: dict[str, Any]) -> None:
        result = compute()
        facts.update(result.pop("facts", {}))
        for name, array in result.items():
            np.save(scratch / f"{name}.npy", array)

    folder, facts, was_cached = cache.fetch(entry_key, fill, force=force)
    return {p.stem: np.load(p) for p in folder.glob("*.npy")}, facts, was_cached


def _run_stage(
    config: StageConfig,
    source: Source,
    parent_key: str,
    parent_sha: str,
    cache: Cache,
    versions: dict[str, str],
    force: bool,
) -> tuple[StageRecord, str, Path | None]:
    spec = REGISTRY[config.name]
    params = config.params.model_dump(mode="json")
    stage_key = key("stage", config.name, params, parent_key, versions, environment.source_sha256(spec.run))
    t0 = time.perf_counter()

    def fill(scratch: Path, facts: dict[str, Any]) -> None:
        made = spec.run(source, config.params, scratch / f"{config.name}.onnx")
        if not isinstance(made, spec.facts):
            raise TypeError(f"stage {config.name!r} returned {type(made).__name__}, not its {spec.facts.__name__}")
        facts.update(made.model_dump(mode="json"))
        facts["seconds"] = time.perf_counter() - t0
        pause(f"stage:{config.name}")

    try:
        folder, facts, cached = cache.fetch(stage_key, fill, force=force)
    except StageError as exc:
        record = StageRecord(
            config.name, spec.precision, params, parent_sha, None, None, time.perf_counter() - t0, False, (), str(exc)
        )
        return record, stage_key, None
    artifact = describe(folder / f"{config.name}.onnx")
    seconds = facts.pop("seconds", 0.0)
    typed = spec.facts.model_validate({k: v for k, v in facts.items() if k not in _COMPUTED})
    record = StageRecord(config.name, spec.precision, params, parent_sha, artifact, typed, seconds, cached)
    # the next stage is keyed by this artifact's content, so an equal artifact reuses downstream work
    return record, key(stage_key, artifact.sha256), artifact.path


_COMPUTED = {"fused_ops"}  # computed fields a dump holds and validation refuses


def _check_on(
    runtime: RuntimeConfig,
    record: StageRecord,
    accept: Accept,
    ev: Evaluation,
    reference_logits: np.ndarray,
    pool: Pool,
    cache: Cache,
    force: bool,
    progress: Progress,
    shared: dict[str, Any],
) -> EngineCheck:
    """Validate one artifact on one engine (cached by the artifact's graph, data, engine, its version and parameters;
    an artifact whose graph an earlier stage of this run already produced shares that stage's outputs)."""
    assert record.artifact is not None
    row = row_name(runtime.name, record.stage)
    int8 = record.precision.batch_dependence
    entry = key(
        "check",
        record.artifact.graph_sha256,
        ev.key,
        runtime.name,
        ENGINES[runtime.name].version(),
        runtime.params.model_dump(mode="json"),
        int8 and BATCH_DEPENDENCE_SAMPLES,
    )

    def compute() -> dict[str, Any]:
        try:
            runner = pool.artifact(runtime.name, runtime.params, record.stage, record.artifact.path)
        except NotApplicable as refusal:
            return {"facts": {"not_applicable": str(refusal)}}
        runner.check_inputs(tuple(i.name for i in ev.inputs), record.artifact.path)
        pause(f"validate:{record.stage}")
        arrays: dict[str, Any] = ev.outputs(runner, progress.validating(row, len(ev.samples)))
        if int8:
            arrays["alone"] = validate.alone(runner, ev.samples[:BATCH_DEPENDENCE_SAMPLES], ev.inputs)
        arrays["facts"] = {"precision": runner.precision}
        return arrays

    if entry not in shared:  # the same entry again in this run: the same graph on the same engine
        shared[entry] = _cached_arrays(cache, entry, force, compute)
    arrays, facts, cached = shared[entry]
    if "not_applicable" in facts:
        return EngineCheck(runtime.name, row, "not run", cached, not_applicable=facts["not_applicable"])
    logits = arrays["logits"]
    comparison = validate.compare(logits, reference_logits, ev.labels, rtol=accept.rtol or 0.0)
    dependence = None
    if "alone" in arrays:
        dependence = validate.batch_dependence(logits[: len(arrays["alone"])], arrays["alone"])
    return EngineCheck(
        runtime.name,
        row,
        facts["precision"],
        cached,
        check=validate.judge(comparison, accept),
        padding=_padding_check(arrays, logits, ev.labels, accept),
        batch_dependence=dependence,
    )


def copy_artifacts(result: RunResult, folder: Path) -> dict[str, Path]:
    """Copy each stage's files into ``folder`` as ``<stage>.onnx`` (+ external data); return new paths."""
    copies = {}
    for record in result.records:
        if record.artifact is not None:
            for name in record.artifact.files:
                shutil.copy2(record.artifact.path.parent / name, folder / name)
            copies[record.stage] = folder / record.artifact.path.name
    return copies
