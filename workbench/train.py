"""Train a token classifier on the synthetic sentiment set with a fixed seed; write its state_dict."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench import data
from workbench.model import import_class


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
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(ids)), torch.from_numpy(labels))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            bar.update(task, advance=1, loss=f"{loss.item():.4f}")
    model.eval()
    held_out = data.synthetic(
        config.held_out,
        seed=config.seed,
        split="held_out",
        min_len=config.min_len,
        max_len=config.max_len,
        vocab_size=config.vocab_size,
    )
    correct = 0
    with torch.no_grad():
        for batch in data.batches(held_out):
            correct += int((model(torch.from_numpy(batch.ids)).argmax(1).numpy() == batch.labels).sum())
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        torch.save(model.state_dict(), tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return TrainResult(out, correct / len(held_out), float(loss.item()), config.steps)
