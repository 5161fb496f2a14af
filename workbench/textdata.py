"""Labelled text (CSV or JSONL) tokenized into ``data.Sample``s, and whether a set is fine enough for a verdict.

The workbench feeds attention_mask from padding and token_type_ids as zeros, so a sample keeps only its token
ids: for a single text (no sentence pair) a BERT tokenizer's token_type_ids are all 0. Every refusal is one
``InputError`` line naming the file (and line), what was found and what is allowed.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from workbench.data import Sample
from workbench.errors import InputError

if TYPE_CHECKING:
    import tokenizers

FORMATS = ("csv", "jsonl")
MIN_SAMPLES = 50  # the default floor: below it one sample moves agreement and accuracy by more than 2%
SHOWN_LABELS = 10


@dataclass(frozen=True)
class TextRow:
    line: int  # where the row starts in its file, counting from 1
    text: str
    label: Any  # as read: a str from CSV, a str or int from JSONL


def _rows_csv(path: Path, text: str, label: str) -> Iterator[TextRow]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: empty file (expected a header row with columns {text!r} and {label!r})")
        columns = [name.strip() for name in header]
        for name in (text, label):
            if name not in columns:
                raise InputError(f"{path}: no column {name!r}; the columns are: {', '.join(columns)}")
        text_at, label_at = columns.index(text), columns.index(label)
        start = reader.line_num + 1
        for row in reader:
            if row:  # csv.reader gives [] for a blank line
                if len(row) != len(columns):
                    raise InputError(f"{path}:{start}: {len(row)} fields, but the header has {len(columns)}")
                yield TextRow(start, row[text_at], row[label_at])
            start = reader.line_num + 1


def _rows_jsonl(path: Path, text: str, label: str) -> Iterator[TextRow]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            for name in (text, label):
                if name not in row:
                    raise InputError(f"{path}:{number}: no key {name!r}; this line has: {', '.join(map(str, row))}")
            if not isinstance(row[text], str):
                raise InputError(f"{path}:{number}: {text!r} must be a string, got {type(row[text]).__name__}")
            yield TextRow(number, row[text], row[label])


def row_stream(path: str | Path, *, text: str, label: str, fmt: str | None = None) -> Iterator[TextRow]:
    """The rows of a CSV (with a header) or JSONL file, read as they are needed; every error names its line."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise InputError(f"{path}: unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")
    reader = _rows_csv if fmt == "csv" else _rows_jsonl
    found = False
    try:
        for row in reader(path, text, label):
            if not row.text.strip():
                raise InputError(f"{path}:{row.line}: empty text in {text!r}")
            found = True
            yield row
    except FileNotFoundError:
        raise InputError(f"{path}: data file not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not readable as CSV: {exc}") from None
    if not found:
        raise InputError(f"{path}: no samples (expected rows with {text!r} and {label!r})")


def allowed_labels(names: Sequence[str]) -> str:
    """``negative (0), positive (1)``; long lists cut after SHOWN_LABELS."""
    shown = ", ".join(f"{name} ({index})" for index, name in enumerate(names[:SHOWN_LABELS]))
    return shown if len(names) <= SHOWN_LABELS else f"{shown}, ... ({len(names)} classes, 0..{len(names) - 1})"


def label_index(value: Any, names: Sequence[str], where: str) -> int:
    """A label as the class index: a class name, or an integer (or integer text) in range."""
    index: int | None = None
    if isinstance(value, str) and value.strip() in names:
        return list(names).index(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        index = int(value)
    if index is None or not 0 <= index < len(names):
        allowed = allowed_labels(names)
        raise InputError(f"{where}: label {value!r} is not one of the model's classes; allowed: {allowed}")
    return index


def load_tokenizer(path: str | Path) -> tokenizers.Tokenizer:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file (for a ``module:Class`` model)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: tokenizer file not found (expected a tokenizer.json of the tokenizers library)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a file it cannot parse
        raise InputError(f"{path}: not a tokenizers tokenizer.json: {str(exc).splitlines()[0]}") from None


def _special_tokens(tokenizer: Any) -> int:
    """How many special tokens ([CLS], [SEP], ...) the tokenizer adds to one text."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return int(tokenizer.num_special_tokens_to_add(False))
    return int(tokenizer.num_special_tokens_to_add(pair=False))


def encode(tokenizer: Any, texts: Sequence[str], *, max_length: int) -> list[tuple[list[int], int]]:
    """Per text: its ids cut to ``max_length`` (special tokens kept) and its length before the cut."""
    special = _special_tokens(tokenizer)
    if max_length <= special:
        raise InputError(f"max_length {max_length} leaves no room for text: the tokenizer adds {special} special ids")
    from tokenizers import Tokenizer

    if not isinstance(tokenizer, Tokenizer):  # a transformers tokenizer
        full = tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
        long = [i for i, ids in enumerate(full) if len(ids) > max_length]
        cut = tokenizer([texts[i] for i in long], truncation=True, max_length=max_length)["input_ids"] if long else []
        ids = list(full)
        for i, short in zip(long, cut, strict=True):
            ids[i] = short
        return [(list(row), len(whole)) for row, whole in zip(ids, full, strict=True)]
    own = Tokenizer.from_str(tokenizer.to_str())  # a copy: the caller's truncation and padding stay as they were
    own.no_padding()
    own.no_truncation()
    whole = [len(e.ids) for e in own.encode_batch(list(texts))]
    own.enable_truncation(max_length)
    return [(e.ids, n) for e, n in zip(own.encode_batch(list(texts)), whole, strict=True)]


def _check_vocabulary(encoded: list[tuple[list[int], int]], rows: list[TextRow], vocab_size: int, path: Path) -> None:
    for row, (ids, _) in zip(rows, encoded, strict=True):
        if max(ids) >= vocab_size:
            raise InputError(
                f"{path}:{row.line}: the tokenizer gave id {max(ids)}, outside the model's ids [0, {vocab_size - 1}]"
            )


def text_stream(
    path: str | Path,
    *,
    text: str,
    label: str,
    tokenizer: Any,
    max_length: int,
    label_names: Sequence[str],
    fmt: str | None = None,
    vocab_size: int | None = None,
    chunk: int = 1024,
) -> Iterator[tuple[Sample, int, int]]:
    """Each sample of labelled text with its line and its tokenized length before the cut, tokenized ``chunk``
    rows at a time, so a file of any size is read with bounded memory."""
    path = Path(path)
    rows = row_stream(path, text=text, label=label, fmt=fmt)
    while block := list(islice(rows, chunk)):
        labels = [label_index(row.label, label_names, f"{path}:{row.line}") for row in block]
        encoded = encode(tokenizer, [row.text for row in block], max_length=max_length)
        if vocab_size is not None:
            _check_vocabulary(encoded, block, vocab_size, path)
        for row, (ids, whole), k in zip(block, encoded, labels, strict=True):
            yield Sample(tuple(ids), k), row.line, whole


class DataFacts(BaseModel):
    """The evaluation set as the report states it: size, classes, what tokenizing cut, how fine a verdict it allows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: int
    min_samples: int  # the floor the recipe allows (data.min_samples)
    resolution: float  # one sample's share of agreement and accuracy: 1 / samples
    class_names: tuple[str, ...] = ()  # config.id2label of a Hugging Face folder, or the recipe's model.classes
    label_counts: tuple[int, ...] = ()  # samples per class, indexed like class_names
    tokenizer: str | None = None  # what tokenized the text (None: the data were token ids)
    max_length: int | None = None
    truncated: int = 0  # texts longer than max_length, cut to it
    longest: int | None = None  # the longest tokenized text before the cut
    coarse: tuple[str, ...] = ()  # "<stage>: <threshold> is finer than one sample ...", one per threshold


@dataclass(frozen=True)
class Resolution:
    """How coarse an evaluation set is: one sample moves agreement and accuracy by ``step``."""

    samples: int

    @property
    def step(self) -> float:
        return 1 / self.samples

    def __str__(self) -> str:
        return f"one sample = {self.step:.2%} of agreement and accuracy ({self.samples} samples)"


def resolution(samples: int) -> Resolution:
    if samples < 1:
        raise InputError(f"an evaluation set needs at least one sample, got {samples}")
    return Resolution(samples)


def require_samples(samples: int, *, floor: int = MIN_SAMPLES, where: str = "the evaluation set") -> None:
    """Refuse a set too small to support a verdict; ``floor`` is what the recipe allows."""
    if samples < floor:
        raise InputError(
            f"{where} has {samples} samples, fewer than the floor of {floor} ({resolution(samples)}); "
            "add samples or lower the floor"
        )


def _finer(name: str, value: float, tolerance: float, samples: int) -> str | None:
    allowed = tolerance * samples  # how many samples the threshold lets go
    if tolerance <= 0 or allowed >= 1 or math.isclose(allowed, 1.0, rel_tol=1e-9):
        return None
    needed = math.ceil(1 / tolerance - 1e-9)
    return (
        f"{name} {value:g} is finer than one sample of {samples} ({1 / samples:.2%}): a single sample fails it; "
        f"it tolerates one from {needed} samples on"
    )


def coarse_thresholds(samples: int, *, min_agreement: float | None, max_accuracy_drop: float | None) -> tuple[str, ...]:
    """A warning per threshold that is finer than one sample of this set (it then demands a perfect score)."""
    found = [
        _finer("min_agreement", min_agreement, 1 - min_agreement, samples) if min_agreement is not None else None,
        _finer("max_accuracy_drop", max_accuracy_drop, max_accuracy_drop, samples)
        if max_accuracy_drop is not None
        else None,
    ]
    return tuple(text for text in found if text)
