"""A content-addressed store: key -> a folder written whole or not at all.

An entry is made in a temporary folder and renamed into place only once complete, with a manifest of
its files' hashes; a reader re-hashes them, so a half-written or altered entry is never trusted.
Hidden folders (``.<key>.*``) are work in progress or leftovers of a killed run; readers ignore them.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workbench.store.files import file_sha256

MANIFEST = "manifest.json"


class Cache:
    def __init__(self, folder: Path):
        self.folder = folder

    def get(self, entry_key: str) -> tuple[Path, dict[str, Any]] | None:
        """The entry's folder and its stored facts, if present and every file still matches its hash."""
        entry = self.folder / entry_key
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
            intact = all(file_sha256(entry / name) == digest for name, digest in manifest["files"].items())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (entry, manifest["facts"]) if intact else None

    def fetch(
        self, entry_key: str, fill: Callable[[Path, dict[str, Any]], None], *, force: bool = False
    ) -> tuple[Path, dict[str, Any], bool]:
        """The entry (folder, facts) and whether it was there already; if not (or with ``force``), ``fill`` writes
        its files into a scratch folder and its facts into a dict, which become the entry whole. An exception
        from ``fill`` leaves no entry behind."""
        hit = None if force else self.get(entry_key)
        if hit is not None:
            return (*hit, True)
        with self.put(entry_key, replace=force) as (scratch, facts):
            fill(scratch, facts)
        hit = self.get(entry_key)
        assert hit is not None, "a cache entry just written failed its hash check"
        return (*hit, False)

    @contextmanager
    def put(self, entry_key: str, *, replace: bool = False) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Yield a scratch folder and a facts dict to fill; on success they become the entry atomically.

        An intact entry that another process put in place meanwhile is kept (same key, same content) unless
        ``replace`` (``--force``) asks for this one; a damaged entry is always replaced."""
        self.folder.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{entry_key}.", dir=self.folder))
        facts: dict[str, Any] = {}
        try:
            yield scratch, facts
            files = {p.name: file_sha256(p) for p in sorted(scratch.iterdir()) if p.is_file()}
            (scratch / MANIFEST).write_text(json.dumps({"files": files, "facts": facts}, indent=1, default=str))
            final = self.folder / entry_key
            if not replace and final.exists() and self.get(entry_key) is not None:
                return
            # an entry that failed its hash check, or one --force redoes: set aside whole, then dropped,
            # so the entry's name always holds a complete entry or nothing
            old = self.folder / f".{entry_key}.old-{os.getpid()}"
            if final.exists():
                try:
                    os.replace(final, old)
                except FileNotFoundError:
                    pass  # another process set it aside first
            try:
                os.replace(scratch, final)
            except OSError as exc:
                # another run (of another recipe sharing this cache) put the same entry in place between the
                # two renames: its entry has the same key, so it is as good as ours; keep it
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            shutil.rmtree(old, ignore_errors=True)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
