"""Shared fixtures: fresh weights of real models, written to real files in temporary folders."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `task` is a top-level module, not part of the installed package

import task  # noqa: E402


@pytest.fixture(scope="session")
def fresh_weights(tmp_path_factory) -> Path:
    """A TextClassifier state_dict with random weights unlike the committed model.pt (seed 12345)."""
    torch.manual_seed(12345)
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(task.TextClassifier().state_dict(), path)
    return path


@pytest.fixture
def lone_task(tmp_path, fresh_weights) -> Path:
    """task.py copied alone into an empty folder beside a fresh model.pt; returns that folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(ROOT / "task.py", folder / "task.py")
    shutil.copy(fresh_weights, folder / "model.pt")
    return folder


@pytest.fixture
def project(tmp_path) -> Path:
    """A project root for recipes: task.py, the tests' tiny models, and the committed model.pt."""
    for name in ("task.py", "model.pt"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(Path(__file__).parent / "tiny_models.py", tmp_path / "tiny_models.py")
    return tmp_path
