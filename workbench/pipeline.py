"""Run a recipe: build the torch reference, run each stage (or take it from the cache), validate, record.

Produces plain records; knows nothing of ONNX internals (stages do) or of markdown (report does).
"""

from __future__ import annotations

import inspect
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from workbench import __version__, check, data
from workbench.artifact import Artifact, describe
from workbench.cache import Cache, key
from workbench.errors import StageError
from workbench.model import build, file_sha256, import_class, load_state_dict
from workbench.recipe import Recipe, StageConfig
from workbench.stages import REGISTRY, Source, TorchSource

CACHE_DIR = ".workbench-cache"


@dataclass(frozen=True)
class StageRecord:
    """One stage of one run: what went in, what came out, what it cost, how it checked out."""

    stage: str
    params: dict[str, Any]
    parent: str  # sha256 of the input artifact, or of the weights for the first stage
    artifact: Artifact | None
    facts: dict[str, Any]
    seconds: float
    cached: bool
    check: check.StageCheck | None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.check is not None and self.check.passed


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


@dataclass(frozen=True)
class RunResult:
    recipe: Recipe
    reference: Reference
    records: tuple[StageRecord, ...]
    environment: dict[str, str]
    threads: int
    started: str
    seconds: float
    skipped: tuple[str, ...] = field(default=())
    bench: dict[str, Any] | None = None  # perf.run's figures, when benchmarks ran

    @property
    def passed(self) -> bool:
        return all(record.passed for record in self.records) and not self.skipped


class Progress:
    """What the pipeline tells the terminal; the CLI gives a rich-backed one, tests a silent one."""

    def stage(self, name: str) -> None: ...
    def done(self, name: str, outcome: str) -> None: ...
    def validating(self, name: str, total: int) -> Callable[[int], None]:
        return lambda n: None


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxsim
    import torch

    return {
        "workbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxsim": onnxsim.__version__,
        "numpy": np.__version__,
    }


def environment(threads: int) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        **tool_versions(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "threads": str(threads),
        "platform": platform.platform(),
    }


def evaluation_set(recipe: Recipe) -> list[data.Sample]:
    spec = recipe.settings.data
    vocab = recipe.model.input.vocab_size
    if spec.jsonl is not None:
        return data.load_jsonl(recipe.resolve(spec.jsonl), vocab_size=vocab)
    syn = spec.synthetic
    return data.synthetic(
        syn.size, seed=syn.seed, split="held_out", min_len=syn.min_len, max_len=syn.max_len, vocab_size=vocab
    )


def torch_source(recipe: Recipe) -> tuple[TorchSource, str]:
    """The eval-mode module ready for export, and a key naming exactly what it was built from."""
    import torch

    spec = recipe.model
    cls = import_class(spec.class_, search_path=recipe.root)
    weights = recipe.resolve(spec.weights)
    state = load_state_dict(weights)
    module = build(cls, dict(spec.kwargs), state, source=weights)
    weights_sha = file_sha256(weights)
    try:
        code_sha = file_sha256(Path(inspect.getsourcefile(cls) or ""))
    except (OSError, TypeError):
        code_sha = "unknown"
    inp = spec.input
    shape = [1, 1]
    shape[inp.axes.index("sequence")] = inp.example_length
    example = torch.zeros(shape, dtype=torch.long)
    axes = {inp.name: {i: name for i, name in enumerate(inp.axes)}, spec.output: {0: "batch"}}
    metadata = {
        "model_class": spec.class_,
        "weights_sha256": weights_sha,
        "torch_version": torch.__version__,
        "vocab_size": str(inp.vocab_size),
        "producer": f"workbench {__version__}",
    }
    source = TorchSource(module, inp.name, spec.output, example, axes, metadata)
    return source, key(spec.class_, code_sha, weights_sha, spec.kwargs, inp.model_dump())


def threads_for(recipe: Recipe, override: int | None = None) -> int:
    return override or recipe.settings.threads or os.cpu_count() or 1


@dataclass(frozen=True)
class _Evaluation:
    """The evaluation set and how to feed it, the same for the reference and every artifact."""

    samples: list[data.Sample]
    labels: np.ndarray
    input_name: str
    batch_first: bool
    batch_size: int
    threads: int
    key: str


def run(
    recipe: Recipe,
    source: TorchSource,
    model_key: str,
    *,
    threads: int,
    force: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Every stage in order, each validated; stops at the first failure unless the recipe says otherwise."""
    progress = progress or Progress()
    started = time.perf_counter()
    cache = Cache(recipe.root / CACHE_DIR)
    versions = tool_versions()
    samples = evaluation_set(recipe)
    spec = recipe.model.input
    evaluation = _Evaluation(
        samples,
        np.array([s.label for s in samples]),
        spec.name,
        spec.axes[0] == "batch",
        recipe.settings.data.batch_size,
        threads,
        key(recipe.settings.data.model_dump(), _data_file_sha(recipe)),
    )

    progress.stage("reference")
    t0 = time.perf_counter()
    reference_logits, reference_cached = _logits(
        cache,
        key("reference", model_key, evaluation.key, versions["torch"]),
        force,
        lambda: check.run_torch(
            source.module,
            samples,
            batch_first=evaluation.batch_first,
            batch_size=evaluation.batch_size,
            threads=threads,
            advance=progress.validating("reference", len(samples)),
        ),
    )
    weights = recipe.resolve(recipe.model.weights)
    reference = Reference(
        weights,
        source.metadata["weights_sha256"],
        weights.stat().st_size,
        float(np.mean(reference_logits.argmax(1) == evaluation.labels)),
        len(samples),
        time.perf_counter() - t0,
        reference_cached,
    )
    progress.done("reference", f"accuracy {reference.accuracy:.2%}")

    records: list[StageRecord] = []
    parent_key, parent_sha, parent_path = model_key, reference.weights_sha256, None
    skipped: tuple[str, ...] = ()
    for index, config in enumerate(recipe.stages):
        progress.stage(config.name)
        stage_source = Source(torch=source if parent_path is None else None, onnx=parent_path)
        record, parent_key, parent_path = _run_stage(
            config, stage_source, parent_key, parent_sha, cache, versions, force
        )
        if record.artifact is not None:
            record = _validate(record, config, evaluation, reference_logits, cache, force, progress)
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
        environment(threads),
        threads,
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
        time.perf_counter() - started,
        skipped,
    )


def _logits(cache: Cache, entry_key: str, force: bool, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """Logits from the cache entry, or computed and stored there; and whether they were cached."""
    hit = None if force else cache.get(entry_key)
    if hit is not None:
        return np.load(hit[0] / "logits.npy"), True
    with cache.put(entry_key) as (scratch, _):
        logits = compute()
        np.save(scratch / "logits.npy", logits)
    return logits, False


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
    stage_key = key("stage", config.name, params, parent_key, versions)
    t0 = time.perf_counter()
    hit = None if force else cache.get(stage_key)
    cached = hit is not None
    if hit is None:
        try:
            with cache.put(stage_key) as (scratch, facts):
                facts.update(spec.run(source, config.params, scratch / f"{config.name}.onnx"))
                facts["seconds"] = time.perf_counter() - t0
        except StageError as exc:
            record = StageRecord(
                config.name, params, parent_sha, None, {}, time.perf_counter() - t0, False, None, str(exc)
            )
            return record, stage_key, None
        hit = cache.get(stage_key)
        assert hit is not None, "a cache entry just written failed its hash check"
    folder, facts = hit
    artifact = describe(folder / f"{config.name}.onnx")
    seconds = facts.pop("seconds", 0.0)
    record = StageRecord(config.name, params, parent_sha, artifact, facts, seconds, cached, None)
    # the next stage is keyed by this artifact's content, so an equal artifact reuses downstream work
    return record, key(stage_key, artifact.sha256), artifact.path


def _validate(
    record: StageRecord,
    config: StageConfig,
    evaluation: _Evaluation,
    reference_logits: np.ndarray,
    cache: Cache,
    force: bool,
    progress: Progress,
) -> StageRecord:
    assert record.artifact is not None
    logits, _ = _logits(
        cache,
        key("check", record.artifact.sha256, evaluation.key),
        force,
        lambda: check.run_onnx(
            record.artifact.path,
            evaluation.samples,
            input_name=evaluation.input_name,
            batch_first=evaluation.batch_first,
            batch_size=evaluation.batch_size,
            threads=evaluation.threads,
            advance=progress.validating(config.name, len(evaluation.samples)),
        ),
    )
    comparison = check.compare(logits, reference_logits, evaluation.labels, rtol=config.accept.rtol or 0.0)
    return replace(record, check=check.judge(comparison, config.accept))


def _data_file_sha(recipe: Recipe) -> str | None:
    jsonl = recipe.settings.data.jsonl
    return file_sha256(recipe.resolve(jsonl)) if jsonl else None


def copy_artifacts(result: RunResult, folder: Path) -> dict[str, Path]:
    """Copy each stage's files into ``folder`` as ``<stage>.onnx`` (+ external data); return new paths."""
    copies = {}
    for record in result.records:
        if record.artifact is not None:
            for name in record.artifact.files:
                shutil.copy2(record.artifact.path.parent / name, folder / name)
            copies[record.stage] = folder / record.artifact.path.name
    return copies
