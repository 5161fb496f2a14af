"""The evaluation set on disk: read once from its source, checked, and written as one flat file of token ids.

Every pass over the set (the reference, each check on each engine) then reads it back a window at a time, so a
pass holds one window of samples and one batch of feeds, whatever the set's size. Per sample, only its label,
its line in the source and where its ids start stay in memory (24 bytes).
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from workbench.data import Sample

WINDOW = 4096  # samples per window (rounded up to whole batches): equal-length batches are grouped within one


class TokenFile:
    """The samples of an evaluation set, in their source's order, in a private temporary folder."""

    def __init__(self, samples: Iterable[tuple[Sample, int]], *, origin: str = ""):
        """``samples``: each sample with its line in ``origin`` (a file; "" and line 0 for a generated set)."""
        self._folder = tempfile.TemporaryDirectory(prefix="wb-tokens-")
        self.path = Path(self._folder.name) / "ids.int32"
        self.origin = origin
        labels, lines, offsets = array("q"), array("q"), array("q", [0])
        with open(self.path, "wb") as handle:
            for sample, line in samples:
                ids = np.asarray(sample.tokens, dtype=np.int32)
                handle.write(ids.tobytes())
                labels.append(sample.label)
                lines.append(line)
                offsets.append(offsets[-1] + len(ids))
        self.labels = np.frombuffer(labels, dtype=np.int64)
        self.lines = np.frombuffer(lines, dtype=np.int64)
        self.offsets = np.frombuffer(offsets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def where(self, index: int) -> str:
        """``file:line`` of a sample, or ``sample N`` for a generated set."""
        return f"{self.origin}:{int(self.lines[index])}" if self.origin else f"sample {index}"

    def read(self, start: int, stop: int) -> list[Sample]:
        """Samples ``start`` to ``stop`` (their ids read from the file, not mapped: nothing stays resident)."""
        stop = min(stop, len(self))
        if start >= stop:
            return []
        first, last = int(self.offsets[start]), int(self.offsets[stop])
        ids = np.fromfile(self.path, dtype=np.int32, count=last - first, offset=4 * first)
        bounds = self.offsets[start : stop + 1] - first
        return [Sample(ids[a:b], int(k)) for a, b, k in zip(bounds[:-1], bounds[1:], self.labels[start:stop])]

    def head(self, n: int) -> list[Sample]:
        return self.read(0, n)

    def windows(self, batch_size: int) -> Iterator[tuple[int, list[Sample]]]:
        """(first index, samples) per window of about WINDOW samples, a whole number of ``batch_size`` batches, so
        batches cut in data set order are the same as over the whole set."""
        size = -(-WINDOW // batch_size) * batch_size
        for start in range(0, len(self), size):
            yield start, self.read(start, start + size)
