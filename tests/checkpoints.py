"""Weights files that pass a zip-signature check and still are not a state_dict: each built from real torch.save output.

A zip check (``zipfile.is_zipfile``) only finds the archive's end record; these get past it, so what stops them
is ``torch.load``'s own errors or the check that every value is a tensor.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

import task


def _small_state() -> dict[str, torch.Tensor]:
    with torch.random.fork_rng():
        torch.manual_seed(3)
        return task.TextClassifier(vocab_size=20, embed_dim=4, hidden_dim=8).state_dict()


def small_checkpoint(path: Path) -> Path:
    """A real TextClassifier state_dict, small enough to write and read in milliseconds."""
    torch.save(_small_state(), path)
    return path


def _tensor_records(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    return [info for info in archive.infolist() if "/data/" in info.filename and "/.data/" not in info.filename]


def foreign_zip(path: Path) -> Path:
    """A valid zip archive laid out like a checkpoint folder, without the pickle that would say what it holds."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/notes.txt", "a zip file, but not one torch.save wrote")
    return path


def cut_inside(checkpoint: Path, path: Path) -> Path:
    """``checkpoint`` with the middle third of its tensor data cut out; the central directory and end record are
    kept, so the zip signature is still found, but the offsets they give now point at the wrong bytes."""
    data = checkpoint.read_bytes()
    with zipfile.ZipFile(checkpoint) as archive:
        records = _tensor_records(archive)
    start = min(info.header_offset for info in records)
    end = max(info.header_offset + info.compress_size for info in records)
    third = (end - start) // 3
    path.write_bytes(data[: start + third] + data[start + 2 * third :])
    return path


def short_record(checkpoint: Path, path: Path) -> Path:
    """``checkpoint`` rewritten as a well-formed zip (directory and checksums right) whose largest tensor record
    holds only half of its bytes: the cut is inside the data, and nothing about the zip shows it."""
    with zipfile.ZipFile(checkpoint) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        largest = max(_tensor_records(source), key=lambda info: info.file_size).filename
        for info in source.infolist():
            body = source.read(info)
            out.writestr(info, body[: len(body) // 2] if info.filename == largest else body)
    return path


def non_tensor_values(path: Path, case: str) -> Path:
    """A mapping that weights_only=True loads without complaint, with a plain value where a tensor belongs."""
    torch.save(NON_TENSORS[case](), path)
    return path


# Each zip case: how to build it from a real checkpoint.
ZIP_CASES = {
    "foreign_zip": lambda checkpoint, path: foreign_zip(path),
    "cut_inside": cut_inside,
    "short_record": short_record,
}
NON_TENSORS = {
    "int_value": lambda: {"embedding.weight": 3},
    # every key of the architecture, one of them a list: only the tensor check stands between it and the model
    "list_among_tensors": lambda: {**_small_state(), "embedding.weight": [[0.5] * 4] * 20},
}
