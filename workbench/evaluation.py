"""The evaluation set of a recipe and how it is fed: the same samples and feeds for the reference and every runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from workbench import data, validate
from workbench.errors import InputError
from workbench.feeds import FeedSpec
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
    feed: FeedSpec
    batch_size: int
    key: str
    padding: bool  # the model takes an attention mask: padded batches are checked too
    calibration: Callable[[int], list[data.Sample]]  # n -> samples disjoint from the evaluation set
    calibration_key: str  # what decides the calibration samples

    def outputs(self, runner: Runner, advance: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        """``logits`` of the runner in equal-length batches and, for a model with a mask, ``padded``: the same
        samples in mixed-length padded batches."""
        run = partial(validate.logits, runner, self.samples, self.feed, batch_size=self.batch_size)
        return {"logits": run(advance=advance), **({"padded": run(padded=True)} if self.padding else {})}

    def calibration_batches(self, n: int) -> Iterator[data.Batch]:
        """Batches of ``n`` calibration samples: padded with the mask set for a model that takes one, else of
        equal lengths (a model without a mask would read padding as tokens)."""
        group = data.padded_batches if self.padding else data.batches
        return group(self.calibration(n), max_batch=self.batch_size)


def calibration_set(recipe: Recipe) -> tuple[Callable[[int], list[data.Sample]], str]:
    """``n`` -> calibration samples, and a key naming them: the recipe's calibration file, else the synthetic
    set's own calibration stream (never the held-out samples)."""
    spec = recipe.settings.data
    vocab = recipe.model.vocab_size
    if spec.calibration is not None:
        path = recipe.resolve(spec.calibration)
        return (lambda n: data.load_jsonl(path, vocab_size=vocab)[:n]), key("file", file_sha256(path))
    syn = spec.synthetic
    if syn is None:
        where = f"{recipe.path}: data.calibration"

        def missing(n: int) -> list[data.Sample]:
            raise InputError(f"{where}: a stage calibrates; give a JSONL file of samples apart from the evaluation set")

        return missing, "none"
    draw = lambda n: data.synthetic(  # noqa: E731
        n, seed=syn.seed, split="calibration", min_len=syn.min_len, max_len=syn.max_len, vocab_size=vocab
    )
    return draw, key("synthetic", syn.model_dump(), vocab)


def evaluation_of(recipe: Recipe) -> Evaluation:
    samples = evaluation_set(recipe)
    spec = recipe.settings.data
    jsonl = recipe.resolve(spec.jsonl) if spec.jsonl else None
    calibration, calibration_key = calibration_set(recipe)
    return Evaluation(
        samples,
        np.array([s.label for s in samples]),
        recipe.model.feed,
        spec.batch_size,
        # what decides the samples and how they are fed (the synthetic set draws its noise from the vocabulary)
        key(
            spec.model_dump(),
            file_sha256(jsonl) if jsonl else None,
            recipe.model.vocab_size,
            [i.model_dump() for i in recipe.model.inputs],
        ),
        recipe.model.feed.has_mask,
        calibration,
        calibration_key,
    )
