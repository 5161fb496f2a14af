"""YAML recipe -> frozen, typed Recipe. Parsed once; every error names the file, the key path and what is allowed.

Paths in a recipe (weights, data, the import search path, reports) are relative to its ``root``,
and ``root`` itself is relative to the recipe's folder (default: that folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workbench import recipe_checks as checks
from workbench.errors import RecipeError
from workbench.feeds import FeedSpec, InputSpec
from workbench.precision import FP32, Accept, Precision
from workbench.recipe_errors import describe, keys
from workbench.safe_yaml import MAX_RECIPE_BYTES, safe_document
from workbench.runtimes import DEFAULT_ENGINES, ENGINES, EngineParams
from workbench.stages import REGISTRY, Params


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True, allow_inf_nan=False)


class ModelSpec(Strict):
    """The PyTorch model of record: ``forward`` takes the inputs positionally, in the order listed.

    Either ``class`` + ``weights`` (a ``module:Class`` and its state_dict) or ``huggingface`` (a local
    ``save_pretrained`` folder: weights, tokenizer, vocabulary, inputs and class names come from its files).
    """

    class_: str | None = Field(None, alias="class", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    weights: str  # for huggingface: filled in as <folder>/model.safetensors
    kwargs: dict[str, int | float | str | bool] = {}
    inputs: tuple[InputSpec, ...] = Field((InputSpec(name="text"),), min_length=1, max_length=16, strict=False)
    output: str = "logits"
    vocab_size: int = Field(1000, ge=2)
    example_length: int = Field(16, ge=1, le=4096)
    # the longest input the model takes (a folder: from its config and tokenizer, unless given); the export's
    # sequence axis ends there and bench lengths are fitted to it (recipe_checks.fit_lengths)
    max_length: int | None = Field(None, ge=2, le=1_000_000)
    huggingface: str | None = None  # a save_pretrained folder (offline, safetensors only)
    tokenizer: str | None = None  # a tokenizer.json: how a module:Class model reads text data
    classes: tuple[str, ...] | None = Field(None, min_length=2, strict=False)  # class names of a module:Class model

    @model_validator(mode="before")
    @classmethod
    def _folder_weights(cls, data: Any) -> Any:
        """A Hugging Face folder brings its own weights, tokenizer and class names: naming them too is an error."""
        if not isinstance(data, dict) or data.get("huggingface") is None:
            return data
        extra = [k for k in ("class", "class_", "weights", "tokenizer", "classes", "kwargs") if k in data]
        if extra:
            raise ValueError(
                f"'huggingface' takes the model, weights, tokenizer and class names from the folder; drop {extra}"
            )
        return {**data, "weights": f"{str(data['huggingface']).rstrip('/')}/model.safetensors"}

    @model_validator(mode="after")
    def _one_ids_input(self) -> ModelSpec:
        if (self.class_ is None) == (self.huggingface is None):
            raise ValueError("give exactly one of 'class' (with 'weights') or 'huggingface' (a save_pretrained folder)")
        names = [spec.name for spec in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must differ, got {names}")
        if [spec.feed for spec in self.inputs].count("ids") != 1:
            raise ValueError("exactly one input must have feed 'ids' (the token ids); others: mask, zeros")
        return self

    @property
    def feed(self) -> FeedSpec:
        """How to feed this model (its inputs, its vocabulary)."""
        return FeedSpec(self.inputs, self.vocab_size, max_length=self.max_length)

    def resolved(self, root: Path) -> ModelSpec:
        """For a Hugging Face folder (relative to ``root``): the spec with the folder's vocabulary, weights file and,
        unless the recipe declares them, the tokenizer's inputs; a ``module:Class`` spec as it is. Idempotent."""
        if self.huggingface is None:
            return self
        from workbench import huggingface

        folder = root / self.huggingface
        info = huggingface.inspect(folder)
        update: dict[str, Any] = {"vocab_size": info.vocab_size, "weights": f"{self.huggingface}/{info.weights_file}"}
        if self.max_length is None:
            update["max_length"] = info.max_positions
        if "inputs" not in self.model_fields_set:
            update["inputs"] = huggingface.tokenizer_inputs(folder)
        return self.model_copy(update=update)


class SyntheticData(Strict):
    size: int = Field(2000, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    min_len: int = Field(8, ge=1, le=65536)
    max_len: int = Field(256, ge=1, le=65536)


class DataSpec(Strict):
    """The labelled evaluation set: synthetic token ids, a JSONL file of token ids, or labelled text (CSV or JSONL)
    tokenized by the model's tokenizer (``text`` names the text column; labels are class names or indices)."""

    synthetic: SyntheticData | None = None
    jsonl: str | None = None  # {"tokens": [...], "label": k} lines, or with ``text``: {text: ..., label: ...} lines
    csv: str | None = None  # a CSV file with a header; needs ``text``
    text: str | None = None  # the column (or JSONL key) holding the text
    label: str = "label"  # the column (or JSONL key) holding the label: a class name or index
    max_length: int | None = Field(None, ge=2, le=65536)  # longer texts are cut (counted); default: the model's
    min_samples: int = Field(50, ge=1, le=1_000_000)  # fewer samples cannot support a verdict: refused
    batch_size: int = Field(64, ge=1, le=4096)
    # samples for stages that calibrate (static quantization): a file in the evaluation set's format
    calibration: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if [self.synthetic, self.jsonl, self.csv].count(None) != 2:
            raise ValueError("give exactly one of 'synthetic' or 'jsonl' (token ids or text), or 'csv' (text)")
        if self.csv is not None and self.text is None:
            raise ValueError("'csv' needs 'text': the column holding the text")
        if self.synthetic is not None and (self.text is not None or self.max_length is not None):
            raise ValueError("'text' and 'max_length' go with a 'csv' or 'jsonl' file of text")
        if self.text is None and self.max_length is not None:
            raise ValueError("'max_length' needs 'text': it cuts tokenized text")
        return self

    @property
    def file(self) -> str | None:
        """The evaluation file (relative to the recipe's root), None for the synthetic set."""
        return self.csv or self.jsonl


Length = Annotated[int, Field(ge=1, le=65536)]


class Throughput(Strict):
    batch: int = Field(16, ge=1, le=4096)
    length: Length = 128


class BenchSpec(Strict):
    """What ``workbench run`` times after the stages (skipped with --no-bench)."""

    enabled: bool = True
    budget_seconds: float = Field(1.0, gt=0, le=600)  # per case, for all contenders together
    latency_lengths: tuple[Length, ...] = Field((32, 256), min_length=1, strict=False)
    throughput: Throughput = Throughput()
    chart_lengths: tuple[Length, ...] = Field((16, 32, 256), min_length=2, strict=False)
    tune: bool = True  # try each engine's grid of load options (its tuning hook) on its final artifact
    # figures measured while the machine was busy are flagged and, by default, measured again by the next run;
    # true keeps them in the cache all the same (still flagged): for a machine that is never quiet
    cache_when_busy: bool = False


class LayerErrorsSpec(Strict):
    """The per-layer error of every quantized artifact: each quantized node, quantized alone, on a sample."""

    enabled: bool = True
    samples: int = Field(64, ge=1, le=100_000)  # the first samples of the evaluation set


class TargetSpec(Strict):
    """How the model will be called: an engine at one (batch, length); each unset key takes the run's own."""

    engine: str | None = None  # default: the recipe's first engine
    batch: int = Field(1, ge=1, le=4096)
    length: Length | None = None  # default: the bench headline length (the longest latency length)
    threads: int | None = Field(None, ge=1, le=256)  # default: the run's threads


class BudgetSpec(Strict):
    """How much accuracy an artifact may give up against PyTorch fp32 and still ship (fractions)."""

    max_accuracy_drop: float = Field(0.005, ge=0, le=1)
    min_agreement: float = Field(0.995, ge=0, le=1)


class SearchSpec(Strict):
    """Quantization variants to try: each trial replaces the recipe's last quantize stage (or is appended)."""

    stage: tuple[Literal["quantize_dynamic", "quantize_static"], ...] = Field(
        ("quantize_dynamic",), min_length=1, strict=False
    )
    vary: dict[str, list[Any]] = {}  # a stage parameter (or exclude_most_sensitive) -> the values to try, in order
    max_trials: int = Field(8, ge=1, le=256)

    @model_validator(mode="before")
    @classmethod
    def _one_stage(cls, data: Any) -> Any:
        """``stage: quantize_static`` is ``stage: [quantize_static]``."""
        if isinstance(data, dict) and isinstance(data.get("stage"), str):
            return {**data, "stage": [data["stage"]]}
        return data


class Settings(Strict):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    root: str = "."
    reports: str = "reports"
    cache: str | None = None  # a folder (relative to root) or an fsspec URL; default: <root>/.workbench-cache
    threads: int | None = Field(None, ge=1, le=256)
    continue_on_failure: bool = False
    model: ModelSpec
    data: DataSpec = DataSpec(synthetic=SyntheticData())
    bench: BenchSpec = BenchSpec()
    layer_errors: LayerErrorsSpec = LayerErrorsSpec()
    # CPU types (workbench.machines.TYPES) every artifact is validated and timed on by `workbench sweep`
    machines: tuple[str, ...] = Field((), strict=False)

    @model_validator(mode="after")
    def _known_machines(self) -> Settings:
        from workbench.machines import TYPES

        unknown = [m for m in self.machines if m not in {t.name for t in TYPES}]
        if unknown:
            raise ValueError(f"machines: unknown CPU types {unknown}; known: {', '.join(t.name for t in TYPES)}")
        return self
    runtimes: list[Any] = Field(list(DEFAULT_ENGINES), min_length=1, max_length=8)  # engines the ONNX artifacts run on
    stages: list[Any] = Field(min_length=1)
    # decide/: the ways the model will be called, the accuracy it may lose, the variants to try
    target: TargetSpec | Annotated[list[TargetSpec], Field(max_length=16)] = []  # one mapping or a list
    budget: BudgetSpec = BudgetSpec()
    search: SearchSpec | None = None


@dataclass(frozen=True)
class StageConfig:
    name: str
    params: Params
    accept: Accept
    precision: Precision  # what its artifact computes in: its own, or its input's for a stage that keeps it


@dataclass(frozen=True)
class RuntimeConfig:
    name: str
    params: EngineParams


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    text: str
    root: Path
    settings: Settings
    stages: tuple[StageConfig, ...]
    runtimes: tuple[RuntimeConfig, ...]

    @property
    def model(self) -> ModelSpec:
        return self.settings.model

    def resolve(self, relative: str) -> Path:
        return (self.root / relative).resolve()

    @property
    def report_dir(self) -> Path:
        return self.resolve(self.settings.reports) / self.name


def load(path: str | Path) -> Recipe:
    """Read and validate a recipe file; any problem is a RecipeError naming ``path`` and the key path."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror or exc}") from None
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: recipe is {len(raw)} bytes; at most {MAX_RECIPE_BYTES} are read")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Recipe:
    try:
        document = safe_document(text, path)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}: not valid YAML{line}: {problem}") from None
    except RecursionError:
        raise RecipeError(f"{path}: YAML nested too deeply") from None
    if not isinstance(document, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with keys {keys(Settings)}, got {type(document).__name__}")
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        raise RecipeError(describe(path, exc, Settings)) from None
    stages: list[StageConfig] = []
    for index, entry in enumerate(settings.stages):
        stages.append(_stage(path, index, entry, stages[-1].precision if stages else FP32))
    checks.stage_order(path, stages)
    checks.calibration(path, settings, stages)
    runtimes = tuple(_runtime(path, index, entry) for index, entry in enumerate(settings.runtimes))
    if len({r.name for r in runtimes}) != len(runtimes):
        raise RecipeError(f"{path}: runtimes: each engine may be named once, got {[r.name for r in runtimes]}")
    root = (path.parent / settings.root).resolve()
    settings = settings.model_copy(update={"model": settings.model.resolved(root)})  # a folder's inputs and vocabulary
    settings = checks.fit_lengths(path, settings)
    name = settings.name or path.stem
    return Recipe(name, path.resolve(), text, root, settings, tuple(stages), runtimes)


def _stage(path: Path, index: int, entry: Any, before: Precision) -> StageConfig:
    """A stage's typed parameters, thresholds and precision (``before``: its input's, kept by a stage that declares
    none, e.g. an optimizer after a quantizer stays int8 and is judged by the int8 rule)."""
    where = f"stages[{index}]"
    known = ", ".join(REGISTRY)
    if not isinstance(entry, dict) or len(entry) != 1:
        raise RecipeError(
            f"{path}: {where}: a stage is a mapping of one stage name to its parameters; known stages: {known}"
        )
    ((name, body),) = entry.items()
    if name not in REGISTRY:
        raise RecipeError(f"{path}: {where}: unknown stage {name!r}; known stages: {known}")
    spec = REGISTRY[name]
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise RecipeError(f"{path}: {where}.{name}: expected a mapping of parameters, got {type(body).__name__}")
    body = dict(body)
    accept_body = body.pop("accept", None)
    try:
        params = spec.params.model_validate(body)
    except ValidationError as exc:
        raise RecipeError(describe(path, exc, spec.params, prefix=f"{where}.{name}")) from None
    precision = spec.precision or before
    accept = precision.accept
    if accept_body is not None:
        if not isinstance(accept_body, dict):
            raise RecipeError(f"{path}: {where}.{name}.accept: expected a mapping with keys {keys(Accept)}")
        try:
            accept = accept.model_copy(update=Accept.model_validate(accept_body).model_dump(exclude_unset=True))
        except ValidationError as exc:
            raise RecipeError(describe(path, exc, Accept, prefix=f"{where}.{name}.accept")) from None
    return StageConfig(name, params, accept, precision)


def _runtime(path: Path, index: int, entry: Any) -> RuntimeConfig:
    """``onnxruntime`` or ``{openvino: {inference_precision: bf16}}``: an engine name and its parameters."""
    where = f"runtimes[{index}]"
    known = ", ".join(ENGINES)
    name: Any = entry if isinstance(entry, str) else None
    body: Any = {} if isinstance(entry, str) else None
    if isinstance(entry, dict) and len(entry) == 1:
        ((name, body),) = entry.items()
    if not isinstance(name, str):
        raise RecipeError(
            f"{path}: {where}: an engine name, or a mapping of one engine name to its parameters; "
            f"known engines: {known}"
        )
    if name not in ENGINES:
        raise RecipeError(f"{path}: {where}: unknown engine {name!r}; known engines: {known}")
    spec = ENGINES[name]
    if not isinstance(body if body is not None else {}, dict):
        raise RecipeError(f"{path}: {where}.{name}: expected a mapping of parameters, got {type(body).__name__}")
    try:
        params = spec.params.model_validate(body or {})
    except ValidationError as exc:
        raise RecipeError(describe(path, exc, spec.params, prefix=f"{where}.{name}")) from None
    if not spec.available():
        raise RecipeError(f"{path}: {where}: engine {name!r} is not installed; install it with: {spec.install}")
    return RuntimeConfig(name, params)
