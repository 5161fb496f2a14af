"""Train a token classifier on the synthetic sentiment set with a fixed seed; write its state_dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench import data
from workbench.feeds import FeedSpec, InputSpec
from workbench.model import import_class
from workbench.store.files import write_atomic


@dataclass(frozen=True)
class TrainConfig:
    model_class: str = "task:TextClassifier"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    min_len: int = 8
    max_len: int = 256
    held_out: int = 1000
    vocab_size: int = 1000
    inputs: tuple[InputSpec, ...] = (InputSpec(name="text"),)  # forward's inputs, in order
    held_out_lengths: tuple[int, int] | None = None  # (min, max) of held-out samples; None: min_len, max_len

    @property
    def held_out_range(self) -> tuple[int, int]:
        return self.held_out_lengths or (self.min_len, self.max_len)


# What a model class may set in its ``TRAIN`` mapping (defaults under the command line's flags).
CLASS_DEFAULTS = ("steps", "batch_size", "learning_rate", "max_len")


def class_defaults(model_class: str, *, search_path: Path) -> dict[str, Any]:
    """The training settings ``model_class`` declares in its ``TRAIN`` class attribute (empty if none)."""
    from workbench.errors import InputError

    declared = dict(getattr(import_class(model_class, search_path=search_path), "TRAIN", {}))
    unknown = sorted(set(declared) - set(CLASS_DEFAULTS))
    if unknown:
        raise InputError(f"{model_class}.TRAIN: unknown settings {unknown}; allowed: {', '.join(CLASS_DEFAULTS)}")
    return declared


@dataclass(frozen=True)
class TrainResult:
    path: Path
    held_out_accuracy: float
    final_loss: float
    steps: int


def train(config: TrainConfig, out: Path, *, search_path: Path, progress: bool = True) -> TrainResult:
    """Train from scratch and write ``out`` (state_dict only) atomically; return held-out accuracy."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    torch.manual_seed(config.seed)
    model = import_class(config.model_class, search_path=search_path)(**config.model_kwargs)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    rng = np.random.default_rng([config.seed, data.SPLITS.index("train")])
    model.train()
    loss = torch.tensor(float("nan"))
    columns = (TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"))
    with Progress(*columns, TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("train", total=config.steps, loss="-")
        for _ in range(config.steps):
            length = int(rng.integers(config.min_len, config.max_len + 1))
            ids, labels = data.sentiment_batch(rng, config.batch_size, length, config.vocab_size)
            tokens = np.ascontiguousarray(ids.T)  # equal lengths: no padding, the mask is all ones
            logits = _forward(model, tokens, np.ones_like(tokens), config)
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            bar.update(task, advance=1, loss=f"{loss.item():.4f}")
    accuracy = held_out_accuracy(model.eval(), config)
    write_atomic(out, lambda tmp: torch.save(model.state_dict(), tmp))
    return TrainResult(out, accuracy, float(loss.item()), config.steps)


def held_out_accuracy(model: Any, config: TrainConfig) -> float:
    """Accuracy of the eval-mode ``model`` on the held-out stream ``config`` names (what ``train`` prints)."""
    import torch

    held_out = data.synthetic(
        config.held_out,
        seed=config.seed,
        split="held_out",
        min_len=config.held_out_range[0],
        max_len=config.held_out_range[1],
        vocab_size=config.vocab_size,
    )
    correct = 0
    with torch.no_grad():
        for batch in data.batches(held_out):
            logits = _forward(model, batch.tokens, batch.mask, config)
            correct += int((logits.argmax(1).numpy() == batch.labels).sum())
    return correct / len(held_out)


def _forward(model: Any, tokens: np.ndarray, mask: np.ndarray, config: TrainConfig) -> Any:
    """``model``'s logits for batch-first ``tokens``, each declared input laid out and typed as declared."""
    import torch

    feeds = FeedSpec(config.inputs, config.vocab_size).feeds(tokens, mask)
    return model(*(torch.from_numpy(array) for array in feeds.values()))


def evaluate(config: TrainConfig, weights: Path, *, search_path: Path) -> float:
    """The held-out accuracy of the weights in ``weights`` (loaded safely), without training."""
    from workbench.model import build, load_state_dict

    cls = import_class(config.model_class, search_path=search_path)
    model = build(cls, dict(config.model_kwargs), load_state_dict(weights), source=weights)
    return held_out_accuracy(model, config)
