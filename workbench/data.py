"""Labelled token-id data: a seeded synthetic sentiment set, JSONL files, and length-bucketed batches.

The synthetic task: among noise tokens, some ids are "positive" and some "negative"; the label is 1
when positive ids outnumber negative ones. Each sample keeps a clear majority (60-90% of its
sentiment tokens), so a model that counts well can reach near-perfect held-out accuracy.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from workbench.errors import InputError

POSITIVE_IDS = range(10, 60)
NEGATIVE_IDS = range(60, 110)
NOISE_START = 110  # noise ids are [NOISE_START, vocab_size)
SPLITS = ("train", "held_out", "calibration")  # independent streams of the synthetic set


@dataclass(frozen=True)
class Sample:
    tokens: Sequence[int] | np.ndarray  # a tuple as read; an int32 array when streamed from a TokenFile
    label: int


def sentiment_batch(
    rng: np.random.Generator, batch: int, length: int, vocab_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` samples of one ``length``: ids of shape [length, batch] (sequence first) and labels [batch]."""
    if vocab_size <= NOISE_START:
        raise InputError(f"the synthetic set needs vocab_size > {NOISE_START}, got {vocab_size}")
    ids = rng.integers(NOISE_START, vocab_size, size=(length, batch))
    labels = rng.integers(0, 2, size=batch)
    for column, label in enumerate(labels):
        sentiment = max(1, round(rng.uniform(0.1, 0.5) * length))
        majority = max(sentiment // 2 + 1, round(rng.uniform(0.6, 0.9) * sentiment))
        positive = majority if label == 1 else sentiment - majority
        where = rng.choice(length, size=sentiment, replace=False)
        ids[where[:positive], column] = rng.choice(POSITIVE_IDS, positive)
        ids[where[positive:], column] = rng.choice(NEGATIVE_IDS, sentiment - positive)
    return ids, labels


def synthetic(
    size: int, *, seed: int, split: str = "held_out", min_len: int = 8, max_len: int = 256, vocab_size: int = 1000
) -> list[Sample]:
    """``size`` samples of the synthetic set; the same arguments always give the same samples.

    ``split`` picks an independent stream, so a training run never sees the held-out samples.
    """
    stream = synthetic_stream(seed=seed, split=split, min_len=min_len, max_len=max_len, vocab_size=vocab_size)
    return list(islice(stream, size))


def synthetic_stream(
    *, seed: int, split: str = "held_out", min_len: int = 8, max_len: int = 256, vocab_size: int = 1000
) -> Iterator[Sample]:
    """The synthetic set's samples one at a time, without end: its first ``n`` are ``synthetic(n, ...)``."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if not 1 <= min_len <= max_len:
        raise InputError(f"lengths must satisfy 1 <= min_len <= max_len, got {min_len} and {max_len}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    while True:
        ids, labels = sentiment_batch(rng, 1, int(rng.integers(min_len, max_len + 1)), vocab_size)
        yield Sample(tuple(int(t) for t in ids[:, 0]), int(labels[0]))


def jsonl_stream(path: str | Path, *, vocab_size: int | None = None) -> Iterator[tuple[Sample, int]]:
    """Each sample of a token-id JSONL file with its line (counting from 1), read a line at a time; a bad row is
    an InputError naming its line, a file without samples one naming the file."""
    path = Path(path)
    found = False
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    found = True
                    yield _parse_row(line, f"{path}:{number}", vocab_size), number
    except FileNotFoundError:
        raise InputError(f"{path}: data file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as UTF-8 text: {exc}") from None
    if not found:
        raise InputError(f"{path}: no samples (expected one JSON object per line)")


def _parse_row(line: str, where: str, vocab_size: int | None) -> Sample:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON: {exc.msg}") from None
    if not isinstance(row, dict) or set(row) != {"tokens", "label"}:
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise InputError(f'{where}: expected an object with exactly the keys "tokens" and "label", got {keys}')
    tokens, label = row["tokens"], row["label"]
    if not isinstance(tokens, list) or not tokens:
        raise InputError(f"{where}: tokens must be a non-empty list of integer ids")
    upper = f", {vocab_size - 1}]" if vocab_size else ", ...)"
    for position, token in enumerate(tokens):
        if type(token) is not int or token < 0 or (vocab_size is not None and token >= vocab_size):
            raise InputError(f"{where}: tokens[{position}] = {token!r} is not a token id in [0{upper}")
    if type(label) is not int or label < 0:
        raise InputError(f"{where}: label = {label!r} is not a class index (an integer >= 0)")
    return Sample(tuple(tokens), label)


def write_jsonl(samples: Sequence[Sample], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for sample in samples:
            handle.write(json.dumps({"tokens": list(sample.tokens), "label": sample.label}) + "\n")


@dataclass(frozen=True)
class Batch:
    tokens: np.ndarray  # int64 [batch, length], batch first; padding (id PAD_ID) where mask is 0
    mask: np.ndarray  # int64 [batch, length]: 1 for a token, 0 for padding
    labels: np.ndarray  # int64 [batch]
    indices: np.ndarray  # positions of these samples in the data set


PAD_ID = 0


def _batch(samples: Sequence[Sample], chosen: Sequence[int]) -> Batch:
    length = max(len(samples[i].tokens) for i in chosen)
    tokens = np.full((len(chosen), length), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(chosen), length), dtype=np.int64)
    for row, index in enumerate(chosen):
        n = len(samples[index].tokens)
        tokens[row, :n] = samples[index].tokens
        mask[row, :n] = 1
    labels = np.array([samples[i].label for i in chosen], dtype=np.int64)
    return Batch(tokens, mask, labels, np.array(chosen))


def batches(samples: Sequence[Sample], *, max_batch: int = 64) -> Iterator[Batch]:
    """Batches of equal-length samples (no padding, so batching never changes a result)."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        by_length[len(sample.tokens)].append(index)
    for length in sorted(by_length):
        group = by_length[length]
        for start in range(0, len(group), max_batch):
            yield _batch(samples, group[start : start + max_batch])


def padded_batches(samples: Sequence[Sample], *, max_batch: int = 64) -> Iterator[Batch]:
    """Batches of mixed lengths in data set order, padded to their longest sample (what a serving batcher does)."""
    for start in range(0, len(samples), max_batch):
        yield _batch(samples, range(start, min(start + max_batch, len(samples))))
