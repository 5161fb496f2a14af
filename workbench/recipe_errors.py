"""pydantic's validation errors -> one message: ``file: key.path: what is wrong (what is allowed)``."""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


def describe(path: Path, exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """All of pydantic's complaints as one message: ``file: key.path: what is wrong (what is allowed)``."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if part not in ("function-after",)]
        key = _key_path(prefix, loc, model)
        if error["type"] == "extra_forbidden":
            allowed = keys(_model_at(model, loc[:-1]))
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


def keys(model: type[BaseModel] | None) -> str:
    if model is None:
        return "(none)"
    return ", ".join(field.alias or name for name, field in model.model_fields.items())
