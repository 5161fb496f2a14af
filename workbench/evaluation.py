"""The evaluation set of a recipe and how it is fed: the same samples and feeds for the reference and every runner.

Sources: the synthetic set, a JSONL file of token ids, or labelled text (CSV or JSONL) tokenized by the model's
tokenizer. A set that cannot support a verdict is refused here (too few samples, labels outside the classes);
``Evaluation.facts`` says how coarse it is, for the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np

from workbench import data, textdata, validate
from workbench.errors import InputError
from workbench.feeds import FeedSpec
from workbench.model import model_spec
from workbench.recipe import ModelSpec, Recipe
from workbench.runtimes import Runner
from workbench.spread import RunnerSpec, Spread
from workbench.store.files import file_sha256, key
from workbench.textdata import DataFacts
from workbench.tokens import WINDOW, TokenFile

DEFAULT_MAX_LENGTH = 512  # text data for a model that states no longest input


@dataclass
class Reading:
    """What tokenizing text did, counted as the stream goes by (None for token ids)."""

    max_length: int
    truncated: int = 0
    longest: int = 0


def _tokenizer(recipe: Recipe, spec: ModelSpec) -> object:
    """The model's tokenizer: the folder's, or the recipe's tokenizer.json."""
    if spec.huggingface is not None:
        from workbench import huggingface

        return huggingface.load_tokenizer(recipe.resolve(spec.huggingface))
    if spec.tokenizer is None:
        raise InputError(f"{recipe.path}: data.text: text needs a tokenizer: set model.tokenizer to a tokenizer.json")
    return textdata.load_tokenizer(recipe.resolve(spec.tokenizer))


def class_names(recipe: Recipe, spec: ModelSpec) -> tuple[str, ...]:
    """The model's class names: config.id2label of a folder, else the recipe's model.classes (else none)."""
    if spec.huggingface is not None:
        from workbench import huggingface

        return huggingface.inspect(recipe.resolve(spec.huggingface)).class_names
    return spec.classes or ()


def max_length(recipe: Recipe, spec: ModelSpec) -> int:
    """The recipe's data.max_length, else the model's longest input (a folder's, from its config), else
    DEFAULT_MAX_LENGTH."""
    if recipe.settings.data.max_length is not None:
        return recipe.settings.data.max_length
    return spec.max_length or DEFAULT_MAX_LENGTH


def file_stream(recipe: Recipe, path: Path, reading: Reading | None = None) -> Iterator[tuple[data.Sample, int]]:
    """Each sample of a data file in the recipe's format with its line: labelled text when ``data.text`` is set
    (``reading`` then counts what tokenizing cut), else token-id JSONL. Read as consumed; errors name the line."""
    spec, settings = model_spec(recipe), recipe.settings.data
    names = class_names(recipe, spec)
    if settings.text is None:
        for sample, line in data.jsonl_stream(path, vocab_size=spec.vocab_size):
            if names and sample.label >= len(names):
                textdata.label_index(sample.label, names, f"{path}:{line}")  # raises, naming the allowed labels
            yield sample, line
        return
    if not names:
        raise InputError(
            f"{recipe.path}: data.text: labelled text needs the model's class names: set model.classes, e.g. "
            "[negative, positive] (labels may then be names or indices)"
        )
    reading = reading or Reading(max_length(recipe, spec))
    limit = reading.max_length
    for sample, line, whole in textdata.text_stream(
        path, text=settings.text, label=settings.label, tokenizer=_tokenizer(recipe, spec), max_length=limit,
        label_names=names, fmt="csv" if settings.csv else "jsonl", vocab_size=spec.vocab_size,
    ):
        reading.truncated += whole > limit
        reading.longest = max(reading.longest, whole)
        yield sample, line


def evaluation_set(recipe: Recipe) -> tuple[TokenFile, Reading | None]:
    """The evaluation set read once, checked whole, written to a token file; and what tokenizing cut, for text."""
    settings = recipe.settings.data
    if settings.file is not None:
        path = recipe.resolve(settings.file)
        reading = Reading(max_length(recipe, model_spec(recipe))) if settings.text is not None else None
        return TokenFile(file_stream(recipe, path, reading), origin=str(path)), reading
    syn = settings.synthetic
    assert syn is not None
    stream = data.synthetic_stream(
        seed=syn.seed, split="held_out", min_len=syn.min_len, max_len=syn.max_len, vocab_size=model_spec(recipe).vocab_size
    )
    return TokenFile((sample, 0) for sample in islice(stream, syn.size)), None


@dataclass(frozen=True)
class Evaluation:
    """The evaluation set and how to feed it, the same for the reference and every artifact."""

    tokens: TokenFile
    feed: FeedSpec
    batch_size: int
    key: str
    padding: bool  # the model takes an attention mask: padded batches are checked too
    calibration: Callable[[int], list[data.Sample]]  # n -> samples disjoint from the evaluation set
    calibration_key: str  # what decides the calibration samples
    facts: DataFacts | None = None  # size, classes, truncation, resolution: what the report says of the set

    @property
    def labels(self) -> np.ndarray:
        return self.tokens.labels

    def __len__(self) -> int:
        return len(self.tokens)

    def head(self, n: int) -> list[data.Sample]:
        """The first ``n`` samples (batch dependence and per-layer error look at these)."""
        return self.tokens.head(n)

    def outputs(
        self,
        runner: Runner,
        folder: Path,
        advance: Callable[[int], None] | None = None,
        spread: tuple[Spread, RunnerSpec] | None = None,
    ) -> None:
        """Write ``logits.npy`` of the runner in equal-length batches and, for a model with a mask, ``padded.npy``:
        the same samples in mixed-length padded batches, into ``folder``, a window of samples at a time (computed by
        Ray workers that build the runner ``spread`` describes, when given). A label the logits have no class for is
        an InputError."""
        write = partial(spread[0].write_logits, spread[1]) if spread else partial(validate.write_logits, runner)
        write(self.tokens.windows(self.batch_size), len(self), self.feed, folder / "logits.npy",
              batch_size=self.batch_size, advance=advance, check=self.check_labels)
        if self.padding:
            write(self.tokens.windows(self.batch_size), len(self), self.feed, folder / "padded.npy",
                  batch_size=self.batch_size, padded=True)

    def check_labels(self, classes: int) -> None:
        """Refuse a label the model has no class for: one line naming where it is and the allowed labels."""
        bad = np.flatnonzero(self.labels >= classes)
        if bad.size:
            first = int(bad[0])
            names = self.facts.class_names if self.facts and self.facts.class_names else ()
            allowed = textdata.allowed_labels(names) if names else f"0..{classes - 1} (the model has {classes} outputs)"
            raise InputError(
                f"{self.tokens.where(first)}: label {int(self.labels[first])} is not one of the model's classes "
                f"({bad.size} such labels); allowed: {allowed}"
            )

    def calibration_batches(self, n: int) -> Iterator[data.Batch]:
        """Batches of ``n`` calibration samples: padded with the mask set for a model that takes one, else of
        equal lengths (a model without a mask would read padding as tokens)."""
        group = data.padded_batches if self.padding else data.batches
        return group(self.calibration(n), max_batch=self.batch_size)


def calibration_set(recipe: Recipe) -> tuple[Callable[[int], list[data.Sample]], str]:
    """``n`` -> calibration samples, and a key naming them: the recipe's calibration file (in the evaluation set's
    format), else the synthetic set's own calibration stream (never the held-out samples)."""
    spec = recipe.settings.data
    vocab = model_spec(recipe).vocab_size
    if spec.calibration is not None:
        path = recipe.resolve(spec.calibration)

        def first(n: int) -> list[data.Sample]:
            return [sample for sample, _ in islice(file_stream(recipe, path), n)]

        return first, key("file", file_sha256(path), _reading(recipe))
    syn = spec.synthetic
    if syn is None:
        where = f"{recipe.path}: data.calibration"

        def missing(n: int) -> list[data.Sample]:
            raise InputError(f"{where}: a stage calibrates; give a file of samples apart from the evaluation set")

        return missing, "none"
    draw = lambda n: data.synthetic(  # noqa: E731
        n, seed=syn.seed, split="calibration", min_len=syn.min_len, max_len=syn.max_len, vocab_size=vocab
    )
    return draw, key("synthetic", syn.model_dump(), vocab)


def _reading(recipe: Recipe) -> str | None:
    """What turns a text file into ids: the tokenizer's files and the length limit (None for token ids)."""
    spec = model_spec(recipe)
    if recipe.settings.data.text is None:
        return None
    if spec.huggingface is not None:
        from workbench import huggingface

        return key(huggingface.inspect(recipe.resolve(spec.huggingface)).key, max_length(recipe, spec))
    return key(file_sha256(recipe.resolve(spec.tokenizer)) if spec.tokenizer else None, max_length(recipe, spec))


def facts_of(recipe: Recipe, tokens: TokenFile, reading: Reading | None) -> DataFacts:
    """What the report says of the set; refuses a set below data.min_samples."""
    settings = recipe.settings.data
    n = len(tokens)
    where = f"{recipe.path}: data ({settings.file or 'synthetic'})"
    textdata.require_samples(n, floor=settings.min_samples, where=where)
    names = class_names(recipe, model_spec(recipe))
    coarse = tuple(
        f"{stage.name}: {warning}"
        for stage in recipe.stages
        for warning in textdata.coarse_thresholds(
            n, min_agreement=stage.accept.min_agreement, max_accuracy_drop=stage.accept.max_accuracy_drop
        )
    )
    counts = np.bincount(tokens.labels, minlength=len(names))[: len(names)] if names else ()
    return DataFacts(
        samples=n,
        min_samples=settings.min_samples,
        resolution=textdata.resolution(n).step,
        class_names=names,
        label_counts=tuple(int(c) for c in counts),
        tokenizer=_tokenizer_name(recipe) if reading else None,
        max_length=reading.max_length if reading else None,
        truncated=reading.truncated if reading else 0,
        longest=reading.longest if reading else None,
        coarse=coarse,
    )


def _tokenizer_name(recipe: Recipe) -> str:
    spec = model_spec(recipe)
    return f"the tokenizer of `{spec.huggingface}`" if spec.huggingface else f"`{spec.tokenizer}`"


def evaluation_of(recipe: Recipe) -> Evaluation:
    tokens, reading = evaluation_set(recipe)
    facts = facts_of(recipe, tokens, reading)
    spec = recipe.settings.data
    model = model_spec(recipe)
    file = recipe.resolve(spec.file) if spec.file else None
    calibration, calibration_key = calibration_set(recipe)
    return Evaluation(
        tokens,
        model.feed,
        spec.batch_size,
        # what decides the samples and how they are fed (the synthetic set draws its noise from the vocabulary)
        key(
            spec.model_dump(exclude={"min_samples"}),
            file_sha256(file) if file else None,
            model.vocab_size,
            [i.model_dump() for i in model.inputs],
            _reading(recipe),
            WINDOW,  # equal-length batches are grouped within a window: int8 outputs depend on the batch
        ),
        model.feed.has_mask,
        calibration,
        calibration_key,
        facts,
    )
