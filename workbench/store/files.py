"""Hashes and atomic writes: the one place the workbench writes a file that readers must never see half-done."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def key(*parts: Any) -> str:
    """A stable hash of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def write_atomic(target: Path, write: Callable[[Path], object], *, mode: int = 0o644) -> Path:
    """Call ``write(tmp)`` on a hidden file beside ``target``, then rename it into place (whole or not at all)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def create_exclusive(fs: Any, path: str, data: bytes) -> bool:
    """Write ``data`` at ``path`` on an fsspec filesystem only if nothing is there (compare-and-set).

    True if this call wrote it, False if another writer was first. A local filesystem gets a hard link of a
    complete temporary file (atomic on POSIX); other filesystems use their own exclusive create
    (``pipe_file(mode="create")``: a conditional put on object stores that support it)."""
    from fsspec.implementations.local import LocalFileSystem

    if not isinstance(fs, LocalFileSystem):
        try:
            fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        return True
    tmp = _hidden_beside(path)
    fs.pipe_file(tmp, data)
    try:
        fs.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        fs.rm_file(tmp)
    return True


def replace_atomic(fs: Any, path: str, data: bytes) -> None:
    """Put ``data`` at ``path`` on an fsspec filesystem whole: written under a hidden name, then moved over."""
    tmp = _hidden_beside(path)
    fs.pipe_file(tmp, data)
    try:
        fs.mv(tmp, path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm_file(tmp)
        raise


def _hidden_beside(path: str) -> str:
    parent, name = path.rsplit("/", 1)
    return f"{parent}/.{name}.{uuid.uuid4().hex}"
