"""The evaluation set of a recipe and how it is fed: the same samples and feeds for the reference and every runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from workbench import data, validate
from workbench.recipe import Recipe
from workbench.runtimes import Runner
from workbench.store.files import file_sha256, key


def evaluation_set(recipe: Recipe) -> list[data.Sample]:
    spec = recipe.settings.data
    vocab = recipe.model.vocab_size
    if spec.jsonl is not None:
        return data.load_jsonl(recipe.resolve(spec.jsonl), vocab_size=vocab)
    syn = spec.synthetic
    return data.synthetic(
        syn.size, seed=syn.seed, split="held_out", min_len=syn.min_len, max_len=syn.max_len, vocab_size=vocab
    )


@dataclass(frozen=True)
class Evaluation:
    """The evaluation set and how to feed it, the same for the reference and every artifact."""

    samples: list[data.Sample]
    labels: np.ndarray
    inputs: tuple[Any, ...]
    batch_size: int
    key: str
    padding: bool  # the model takes an attention mask: padded batches are checked too

    def outputs(self, runner: Runner, advance: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        """``logits`` of the runner in equal-length batches and, for a model with a mask, ``padded``: the same
        samples in mixed-length padded batches."""
        run = partial(validate.logits, runner, self.samples, self.inputs, batch_size=self.batch_size)
        return {"logits": run(advance=advance), **({"padded": run(padded=True)} if self.padding else {})}


def evaluation_of(recipe: Recipe) -> Evaluation:
    samples = evaluation_set(recipe)
    spec = recipe.settings.data
    jsonl = recipe.resolve(spec.jsonl) if spec.jsonl else None
    return Evaluation(
        samples,
        np.array([s.label for s in samples]),
        recipe.model.inputs,
        spec.batch_size,
        # what decides the samples and how they are fed (the synthetic set draws its noise from the vocabulary)
        key(
            spec.model_dump(),
            file_sha256(jsonl) if jsonl else None,
            recipe.model.vocab_size,
            [i.model_dump() for i in recipe.model.inputs],
        ),
        recipe.model.has_mask,
    )
