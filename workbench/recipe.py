"""YAML recipe -> frozen, typed Recipe. Parsed once; every error names the file, the key path and what is allowed.

Paths in a recipe (weights, data, the import search path, reports) are relative to its ``root``,
and ``root`` itself is relative to the recipe's folder (default: that folder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workbench.errors import RecipeError
from workbench.runtimes import DEFAULT_ENGINES, ENGINES, EngineParams
from workbench.stages import REGISTRY, Params

MAX_RECIPE_BYTES = 1 << 20
MAX_NODES = 100_000  # after aliases are expanded: a "billion laughs" recipe is refused, not validated
MAX_DEPTH = 64


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True, allow_inf_nan=False)


Axis = Literal["sequence", "batch"]
FEEDS = ("ids", "mask", "zeros")  # token ids; 1 for a token and 0 for padding; all zeros (segment ids)


class InputSpec(Strict):
    """One model input: its name in the graph, what feeds it, its integer type and its axes in order."""

    name: str = Field(pattern=r"^[A-Za-z_][\w.:/-]*$")
    feed: Literal["ids", "mask", "zeros"] = "ids"
    dtype: Literal["int64", "int32"] = "int64"
    axes: tuple[Axis, Axis] = Field(("sequence", "batch"), strict=False)  # strict=False: YAML gives a list

    @model_validator(mode="after")
    def _distinct_axes(self) -> InputSpec:
        if set(self.axes) != {"sequence", "batch"}:
            raise ValueError("axes must name 'sequence' and 'batch' once each, in the input's order")
        return self


class ModelSpec(Strict):
    """The PyTorch model of record: ``forward`` takes the inputs positionally, in the order listed."""

    class_: str = Field(alias="class", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    weights: str
    kwargs: dict[str, int | float | str | bool] = {}
    inputs: tuple[InputSpec, ...] = Field((InputSpec(name="text"),), min_length=1, max_length=16, strict=False)
    output: str = "logits"
    vocab_size: int = Field(1000, ge=2)
    example_length: int = Field(16, ge=1, le=4096)

    @model_validator(mode="after")
    def _one_ids_input(self) -> ModelSpec:
        names = [spec.name for spec in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must differ, got {names}")
        if [spec.feed for spec in self.inputs].count("ids") != 1:
            raise ValueError("exactly one input must have feed 'ids' (the token ids); others: mask, zeros")
        return self

    @property
    def ids_input(self) -> InputSpec:
        return next(spec for spec in self.inputs if spec.feed == "ids")

    @property
    def has_mask(self) -> bool:
        return any(spec.feed == "mask" for spec in self.inputs)


class SyntheticData(Strict):
    size: int = Field(2000, ge=1, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    min_len: int = Field(8, ge=1, le=65536)
    max_len: int = Field(256, ge=1, le=65536)


class DataSpec(Strict):
    synthetic: SyntheticData | None = None
    jsonl: str | None = None
    batch_size: int = Field(64, ge=1, le=4096)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.synthetic is None) == (self.jsonl is None):
            raise ValueError("give exactly one of 'synthetic' or 'jsonl'")
        return self


class Accept(Strict):
    """Acceptance thresholds; ``None`` means the figure is reported but not judged.

    Outputs pass when every element has ``|candidate - reference| <= max_abs_error + rtol * |reference|``
    (numpy.isclose's rule, with both terms written out).
    """

    max_abs_error: float | None = Field(None, ge=0)
    rtol: float | None = Field(None, ge=0)
    min_agreement: float | None = Field(None, ge=0, le=1)
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)


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
    tune: bool = True  # try a small grid of onnxruntime session options on the final artifact


DEFAULT_ACCEPT = {
    # rtol: ORT's fp32 LSTM kernel drifts from PyTorch by up to ~1.5e-5 on logits of ~6 (README, "Exactness")
    "fp32": Accept(max_abs_error=1e-5, rtol=1e-5, min_agreement=1.0, max_accuracy_drop=0.0),
    "int8": Accept(min_agreement=0.995, max_accuracy_drop=0.005),
}


class Settings(Strict):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    root: str = "."
    reports: str = "reports"
    threads: int | None = Field(None, ge=1, le=256)
    continue_on_failure: bool = False
    model: ModelSpec
    data: DataSpec = DataSpec(synthetic=SyntheticData())
    bench: BenchSpec = BenchSpec()
    runtimes: list[Any] = Field(list(DEFAULT_ENGINES), min_length=1, max_length=8)  # engines the ONNX artifacts run on
    stages: list[Any] = Field(min_length=1)


@dataclass(frozen=True)
class StageConfig:
    name: str
    params: Params
    accept: Accept


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


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses every tag written in the text, reads 1e-5 as a float (YAML 1.1 wants a dot) and
    rejects duplicate keys."""

    def scan_tag(self):
        """Refuse a tag where it is written, standard ones too: a recipe holds only plain values (text, numbers,
        booleans, null, lists, mappings), which need no tag, while ``!!set``, ``!!binary``, ``!!timestamp``,
        ``!!omap``... build objects no key takes (a set would fill a list in hash order) and ``!!python/...``
        would run code. Values without a tag are still resolved as before."""
        token = super().scan_tag()
        start, end = token.start_mark, token.end_mark
        written = start.buffer[start.pointer : end.pointer] if start.buffer is not None else repr(token.value)
        raise yaml.scanner.ScannerError(None, None, f"tags are not allowed in a recipe: {written}", start)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


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
        document = _safe_document(text, path)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}: not valid YAML{line}: {problem}") from None
    except RecursionError:
        raise RecipeError(f"{path}: YAML nested too deeply") from None
    if not isinstance(document, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with keys {_keys(Settings)}, got {type(document).__name__}")
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        raise RecipeError(_describe(path, exc, Settings)) from None
    stages = tuple(_stage(path, index, entry) for index, entry in enumerate(settings.stages))
    _check_order(path, stages)
    runtimes = tuple(_runtime(path, index, entry) for index, entry in enumerate(settings.runtimes))
    if len({r.name for r in runtimes}) != len(runtimes):
        raise RecipeError(f"{path}: runtimes: each engine may be named once, got {[r.name for r in runtimes]}")
    root = (path.parent / settings.root).resolve()
    name = settings.name or path.stem
    return Recipe(name, path.resolve(), text, root, settings, stages, runtimes)


def _safe_document(text: str, path: Path) -> Any:
    """Compose the YAML, refuse it if aliases would expand it beyond MAX_NODES or MAX_DEPTH, then construct."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        sizes: dict[int, int] = {}

        def expanded(node: yaml.Node, depth: int) -> int:
            if depth > MAX_DEPTH:
                raise RecipeError(f"{path}: YAML nested deeper than {MAX_DEPTH} levels")
            if id(node) not in sizes:
                children = (
                    node.value
                    if isinstance(node, yaml.SequenceNode)
                    else [part for pair in node.value for part in pair]
                    if isinstance(node, yaml.MappingNode)
                    else []
                )
                sizes[id(node)] = 1 + sum(expanded(child, depth + 1) for child in children)
                if sizes[id(node)] > MAX_NODES:
                    raise RecipeError(f"{path}: YAML expands to more than {MAX_NODES:,} values (an alias bomb?)")
            return sizes[id(node)]

        expanded(root, 0)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _stage(path: Path, index: int, entry: Any) -> StageConfig:
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
        raise RecipeError(_describe(path, exc, spec.params, prefix=f"{where}.{name}")) from None
    accept = DEFAULT_ACCEPT[spec.precision]
    if accept_body is not None:
        if not isinstance(accept_body, dict):
            raise RecipeError(f"{path}: {where}.{name}.accept: expected a mapping with keys {_keys(Accept)}")
        try:
            accept = accept.model_copy(update=Accept.model_validate(accept_body).model_dump(exclude_unset=True))
        except ValidationError as exc:
            raise RecipeError(_describe(path, exc, Accept, prefix=f"{where}.{name}.accept")) from None
    return StageConfig(name, params, accept)


def _runtime(path: Path, index: int, entry: Any) -> RuntimeConfig:
    """``onnxruntime`` or ``{openvino: {inference_precision: bf16}}``: an engine name and its parameters."""
    where = f"runtimes[{index}]"
    known = ", ".join(ENGINES)
    name, body = (entry, {}) if isinstance(entry, str) else (None, None)
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
        raise RecipeError(_describe(path, exc, spec.params, prefix=f"{where}.{name}")) from None
    if not spec.available():
        raise RecipeError(f"{path}: {where}: engine {name!r} is not installed; install it with: {spec.install}")
    return RuntimeConfig(name, params)


def _check_order(path: Path, stages: tuple[StageConfig, ...]) -> None:
    for index, config in enumerate(stages):
        takes_torch = REGISTRY[config.name].takes == "torch"
        if takes_torch != (index == 0):
            first = [name for name, spec in REGISTRY.items() if spec.takes == "torch"]
            raise RecipeError(
                f"{path}: stages[{index}]: {config.name!r} cannot stand here; the first stage, and only it, "
                f"must be one that starts from the torch model: {', '.join(first)}"
            )


def _describe(path: Path, exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """All of pydantic's complaints as one message: ``file: key.path: what is wrong (what is allowed)``."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if part not in ("function-after",)]
        key = _key_path(prefix, loc, model)
        if error["type"] == "extra_forbidden":
            allowed = _keys(_model_at(model, loc[:-1]))
            lines.append(f"{key}: unknown key; allowed keys: {allowed}")
        elif error["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            shown = repr(error["input"])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            lines.append(f"{key}: {shown} is not allowed: {error['msg']}")
    return f"{path}: " + "; ".join(lines)


def _key_path(prefix: str, loc: list[Any], model: Any = None) -> str:
    """pydantic's ``loc`` as a key path, e.g. ``stages[2].quantize_dynamic.op_types[1]``."""
    text = prefix
    for part in _walk(model, loc)[0]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


# pydantic's names for the member of a union an error came from; used only where the schema is unknown
_TYPE_TAGS = {"int", "float", "str", "bool", "none", "tuple", "list", "dict"}


def _walk(model: Any, loc: list[Any]) -> tuple[list[Any], Any]:
    """Follow ``loc`` through the type ``model``: the keys and indexes it names, and the type found at its end.

    Besides keys and indexes, a loc names the member of a union each error came from (``int``, ``str``,
    ``list[int]``, a model's class name, ``tagged-union[...]``). Such a part is dropped only where the schema
    has a union, so a key spelled like a type (``bench: {int: 1}``, ``kwargs: {int: [1]}``) is named like any
    other. Where the schema is not known (below ``Any``), parts spelled like a type tag are dropped.
    """
    parts: list[Any] = []
    current, after_key = model, False
    for part in loc:
        current = _strip(current)
        members = _union_members(current)
        if part == "[key]" and after_key:  # the error is about the mapping key just named, not its value
            continue
        after_key = get_origin(current) is dict
        if members is not None:  # this part names the member tried: follow it, do not show it
            current = next((m for m in members if _tag_names(part, m)), None)
            continue
        if current is None and isinstance(part, str) and (part in _TYPE_TAGS or part.startswith(("union", "tagged-"))):
            continue
        parts.append(str(part) if after_key else part)  # a mapping key, even 1, is a key: kwargs.1
        current = _child(current, part)
    return parts, _strip(current)


def _strip(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> X; ``X | None`` -> X (pydantic validates an optional as X, with no union part)."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, UnionType) and type(None) in get_args(annotation):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return Union[tuple(rest)] if rest else None  # noqa: UP007 - built from a runtime tuple
            annotation = rest[0]
        else:
            return None if annotation is Any else annotation


def _union_members(annotation: Any) -> tuple[Any, ...] | None:
    return tuple(_strip(a) for a in get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else None


def _tag_names(tag: Any, member: Any) -> bool:
    name = getattr(get_origin(member) or member, "__name__", None)
    return isinstance(tag, str) and name is not None and (tag == name or tag.startswith(f"{name}["))


def _child(annotation: Any, part: Any) -> Any:
    """The type of the value at key or index ``part`` inside a value of type ``annotation``; None if unknown."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = next((f for n, f in annotation.model_fields.items() if part in (n, f.alias)), None)
        return field.annotation if field else None  # no such field: an unknown key, the last part of its loc
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, set, frozenset) and args:
        return args[0]
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[part] if isinstance(part, int) and 0 <= part < len(args) else None
    return None


def _model_at(model: type[BaseModel], loc: list[Any]) -> type[BaseModel] | None:
    current = _walk(model, loc)[1]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _keys(model: type[BaseModel] | None) -> str:
    if model is None:
        return "(none)"
    return ", ".join(field.alias or name for name, field in model.model_fields.items())
