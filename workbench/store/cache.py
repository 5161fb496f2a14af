"""A content-addressed store: key -> a folder written whole or not at all, in a local folder or at an fsspec URL.

An entry is made in a temporary folder and renamed into place only once complete, with a manifest of
its files' hashes; a reader re-hashes them, so a half-written or altered entry is never trusted.
Hidden folders (``.<key>.*``) are work in progress or leftovers of a killed run; readers ignore them.

A shared cache (``Cache.open("s3://bucket/cache")``, ``file://``, ``memory://``, any fsspec URL) keeps each
entry as ``<key>/<token>/<files>`` plus ``<key>/manifest.json`` (file hashes, facts, token), the manifest
written last and by compare-and-set: an entry without its manifest is incomplete, and two writers of one
key each upload under their own token, so the manifest always names one complete upload. Callers still
get a local folder: an entry is downloaded into a local mirror (itself a local ``Cache``) after every
file's hash is checked, and a fill happens in the mirror and is then uploaded.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workbench.errors import InputError
from workbench.store.files import create_exclusive, file_sha256, key, replace_atomic

MANIFEST = "manifest.json"


def is_url(root: Path | str) -> bool:
    """Whether a cache root names an fsspec URL (``proto://...``) rather than a local folder."""
    return isinstance(root, str) and "://" in root


class Cache:
    """A local content-addressed cache in ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def open(cls, root: Path | str, *, mirror: Path | None = None) -> Cache:
        """A local ``Cache`` for a path, a ``SharedCache`` for an fsspec URL (downloaded into ``mirror``)."""
        if not is_url(root):
            return Cache(Path(root))
        return SharedCache(str(root), mirror or default_mirror(str(root)))

    def get(self, entry_key: str) -> tuple[Path, dict[str, Any]] | None:
        """The entry's folder and its stored facts, if present and every file still matches its hash."""
        return self._intact(entry_key)

    def _intact(self, entry_key: str) -> tuple[Path, dict[str, Any]] | None:
        """The entry in ``folder`` (folder, facts) if every file still matches its hash."""
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
            if not replace and final.exists() and self._intact(entry_key) is not None:
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


def default_mirror(url: str) -> Path:
    """The local folder a shared cache's entries are downloaded into when the caller names none."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "workbench" / "mirror" / key(url)[:16]


class _Damaged(Exception):
    """A shared entry whose file is missing or does not match the manifest's hash."""


class SharedCache(Cache):
    """A cache at an fsspec URL; ``folder`` is the local mirror that callers read entries from."""

    def __init__(self, url: str, mirror: Path):
        super().__init__(mirror)
        self.url = url
        import fsspec

        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            allowed = "a local folder or an fsspec URL such as s3://bucket/path"
            raise InputError(f"cache {url!r}: {exc} ({allowed})") from None
        self.root = root.rstrip("/")

    def get(self, entry_key: str) -> tuple[Path, dict[str, Any]] | None:
        """The mirror's entry if intact, else the shared entry downloaded into the mirror if complete and intact."""
        hit = self._intact(entry_key)
        if hit is not None:
            return hit
        manifest = self._manifest(entry_key)
        return self._intact(entry_key) if manifest is not None and self._download(entry_key, manifest) else None

    @contextmanager
    def put(self, entry_key: str, *, replace: bool = False) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Fill a scratch folder in the mirror; on success it becomes the mirror's entry, then the shared one.

        An intact shared entry that another process published meanwhile is kept (and copied into the mirror)
        unless ``replace``; a damaged or incomplete one is replaced."""
        with super().put(entry_key, replace=replace) as made:
            yield made
        self._publish(entry_key, replace=replace)

    def _path(self, entry_key: str, *parts: str) -> str:
        return "/".join((self.root, entry_key, *parts))

    def _manifest(self, entry_key: str) -> dict[str, Any] | None:
        """The shared entry's manifest, or None if it is absent (incomplete entry) or malformed."""
        try:
            manifest = json.loads(self.fs.cat_file(self._path(entry_key, MANIFEST)))
        except (FileNotFoundError, ValueError):
            return None
        return manifest if _well_formed(manifest) else None

    def _download(self, entry_key: str, manifest: dict[str, Any]) -> bool:
        """Copy the shared entry into the mirror, checking every file's hash; False (nothing kept) if damaged."""
        try:
            with super().put(entry_key, replace=True) as (scratch, facts):
                for name, digest in manifest["files"].items():
                    self.fs.get_file(self._path(entry_key, manifest["data"], name), str(scratch / name))
                    if file_sha256(scratch / name) != digest:
                        raise _Damaged(name)
                facts.update(manifest["facts"])
        except (_Damaged, FileNotFoundError):
            return False
        return True

    def _publish(self, entry_key: str, *, replace: bool) -> None:
        """Upload the mirror's entry under a fresh token, then point the shared manifest at it."""
        old = self._manifest(entry_key)
        if old is not None and not replace and self._download(entry_key, old):
            return  # another process's intact entry is in place: the mirror now holds that one
        new = self._upload(entry_key)
        body = json.dumps(new, indent=1, default=str).encode()
        target = self._path(entry_key, MANIFEST)
        if old is None and not replace:
            if create_exclusive(self.fs, target, body):
                return
            old = self._manifest(entry_key)  # another writer won the compare-and-set: keep theirs if intact
            if old is not None and self._download(entry_key, old):
                self._remove(entry_key, new["data"])
                return
        replace_atomic(self.fs, target, body)
        if old is not None:
            self._remove(entry_key, old["data"])

    def _upload(self, entry_key: str) -> dict[str, Any]:
        """Copy the mirror's (re-verified) entry to ``<key>/<token>/``; its manifest names the token."""
        assert self._intact(entry_key) is not None, "a mirror entry just written failed its hash check"
        local = json.loads((self.folder / entry_key / MANIFEST).read_text())
        token = uuid.uuid4().hex
        self.fs.makedirs(self._path(entry_key, token), exist_ok=True)
        for name in local["files"]:
            self.fs.put_file(str(self.folder / entry_key / name), self._path(entry_key, token, name))
        return {**local, "data": token}

    def _remove(self, entry_key: str, token: str) -> None:
        """Drop an upload no manifest names any more (best effort: another process may have dropped it)."""
        try:
            self.fs.rm(self._path(entry_key, token), recursive=True)
        except FileNotFoundError:
            pass


def _well_formed(manifest: Any) -> bool:
    """A manifest of plain file names (never a path out of the entry) and digests, a facts dict and a plain token."""
    if not isinstance(manifest, dict):
        return False
    files, facts, token = manifest.get("files"), manifest.get("facts"), manifest.get("data")
    if not (isinstance(files, dict) and isinstance(facts, dict) and isinstance(token, str) and token.isalnum()):
        return False
    return all(
        isinstance(name, str)
        and isinstance(digest, str)
        and name == Path(name).name
        and name not in ("..", MANIFEST)
        for name, digest in files.items()
    )
