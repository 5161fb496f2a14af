"""One description of what feeds the model: its inputs (name, what feeds each, type, axes), the vocabulary, the seed.

Validation, benchmarks, tuning, export examples and training all build their arrays here, from batch-first
token ids and a mask; nothing else knows how an input is laid out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

Axis = Literal["sequence", "batch"]
Feed = Literal["ids", "mask", "zeros"]  # token ids, the padding mask (1 for a token), segment ids
IntType = Literal["int64", "int32"]
Feeds = dict[str, np.ndarray]


class InputSpec(BaseModel):
    """One model input: its name in the graph, what feeds it, its integer type and its axes in order.

    ``feed``: ``ids`` (token ids), ``mask`` (1 for a token, 0 for padding) or ``zeros`` (segment ids).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=r"^[A-Za-z_][\w.:/-]*$")
    feed: Feed = "ids"
    dtype: IntType = "int64"
    axes: tuple[Axis, Axis] = Field(("sequence", "batch"), strict=False)  # strict=False: YAML gives a list

    @model_validator(mode="after")
    def _distinct_axes(self) -> InputSpec:
        if set(self.axes) != {"sequence", "batch"}:
            raise ValueError("axes must name 'sequence' and 'batch' once each, in the input's order")
        return self


@dataclass(frozen=True)
class FeedSpec:
    """How to feed the model: its declared inputs in ``forward``'s order, the token ids' range and the longest
    input it takes (None: no known bound)."""

    inputs: tuple[InputSpec, ...]
    vocab_size: int
    seed: int = 0
    max_length: int | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @property
    def has_mask(self) -> bool:
        return any(spec.feed == "mask" for spec in self.inputs)

    def feeds(self, tokens: np.ndarray, mask: np.ndarray) -> Feeds:
        """One array per declared input, from batch-first ``tokens`` and ``mask``, laid out and typed as declared."""
        out = {}
        for spec in self.inputs:
            source = tokens if spec.feed == "ids" else mask if spec.feed == "mask" else np.zeros_like(tokens)
            array = source if spec.axes[0] == "batch" else source.T
            out[spec.name] = np.ascontiguousarray(array, dtype=spec.dtype)
        return out

    def random(self, batch: int, length: int, *, seed: int | None = None) -> Feeds:
        """Seeded random token ids of one shape, no padding (the mask is all ones)."""
        rng = np.random.default_rng([self.seed if seed is None else seed, batch, length])
        tokens = rng.integers(0, self.vocab_size, size=(batch, length))
        return self.feeds(tokens, np.ones_like(tokens))

    def example(self, length: int) -> Feeds:
        """The exporter's example: a batch of two (a batch of one would be specialised to 1), seeded ids and a mask
        with padding at the end of the second row (a model that skips an all-ones mask cannot bake that in)."""
        tokens = np.random.default_rng(self.seed).integers(0, self.vocab_size, size=(2, length))
        mask = np.ones_like(tokens)
        if length > 1:
            mask[1, length // 2 :] = 0
        return self.feeds(tokens, mask)

    def probes(self, shapes: Sequence[tuple[int, int]] = ((1, 7), (3, 64), (2, 300))) -> list[Feeds]:
        """Inputs of several shapes (lengths within the model's longest), for checking that two runners compute the
        same thing."""
        fit = (lambda n: min(n, self.max_length)) if self.max_length else (lambda n: n)
        return [self.random(b, fit(n), seed=self.seed + 1) for b, n in shapes]
