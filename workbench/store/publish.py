"""Write a report folder so that readers only ever see a complete one, and one run at a time per report.

The new folder is filled beside the old one and swapped in by two renames; a run killed between the
two leaves the old folder under a hidden name, and the next run puts it back before doing anything.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.errors import InputError


def _hidden(report_dir: Path, kind: str) -> str:
    return f".{report_dir.name}.{kind}-"


@contextmanager
def locked(report_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``report_dir`` for the block; a second run waits for the first."""
    parent = _writable_parent(report_dir)
    try:
        handle = open(parent / f".{report_dir.name}.lock", "a+")
    except OSError as exc:
        raise InputError(f"{parent}: cannot create the run's lock file: {exc.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another run that is writing {report_dir} ...", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        recover(report_dir)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recover(report_dir: Path) -> None:
    """Undo what an interrupted run left: restore a set-aside report, drop half-written ones."""
    parent = report_dir.parent
    for leftover in sorted(parent.glob(_hidden(report_dir, "old") + "*")):
        if report_dir.exists():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            os.replace(leftover, report_dir)
    for partial in parent.glob(_hidden(report_dir, "new") + "*"):
        shutil.rmtree(partial, ignore_errors=True)


def publish(report_dir: Path, fill: Callable[[Path], None]) -> None:
    """Call ``fill(folder)`` on a fresh folder, then make it ``report_dir``, replacing the old one whole."""
    parent = _writable_parent(report_dir)
    try:
        scratch = Path(tempfile.mkdtemp(prefix=_hidden(report_dir, "new"), dir=parent))
    except OSError as exc:
        raise InputError(f"{parent}: cannot write the report here: {exc.strerror}") from None
    try:
        fill(scratch)
        old = parent / f"{_hidden(report_dir, 'old')}{os.getpid()}"
        if report_dir.exists():
            os.replace(report_dir, old)
        os.replace(scratch, report_dir)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG):
            raise InputError(
                f"{parent}: cannot write the report ({exc.strerror}); the previous report is unchanged"
            ) from None
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _writable_parent(report_dir: Path) -> Path:
    parent = report_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{parent}: cannot create the reports folder: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise InputError(f"{parent}: the reports folder is not writable")
    return parent
