"""A cache at an fsspec URL, on real second filesystems: fsspec's in-process ``memory://`` and a ``file://`` root
shared by separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pytest

from workbench.errors import InputError
from workbench.store.cache import MANIFEST, Cache, SharedCache
from workbench.store.files import key

REPO = Path(__file__).resolve().parents[1]

# fills (or reuses) one entry per key (a file of ``size`` bytes that starts with who made it); with a signals
# folder, each fill waits until both processes are filling, so both publish at the same moment
SCRIPT = """
import json, sys, time
from pathlib import Path
from workbench.store.cache import Cache

url, mirror, label, keys, signals, size = sys.argv[1:7]
cache = Cache.open(url, mirror=Path(mirror))

def fill(scratch, facts):
    (scratch / "model.onnx").write_bytes(f"made by {label}".encode().ljust(int(size), b"."))
    facts["by"] = label
    if signals:
        Path(signals, label).write_text("")
        deadline = time.monotonic() + 20
        while len(list(Path(signals).iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)

out = {}
for k in keys.split(","):
    folder, facts, was_cached = cache.fetch(k, fill)
    out[k] = {"cached": was_cached, "bytes": (folder / "model.onnx").read_bytes()[:10].decode(), "facts": facts}
print(json.dumps(out))
"""


@pytest.fixture(params=["memory", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh shared root on fsspec's in-memory filesystem or on a local ``file://`` root."""
    if request.param == "file":
        yield f"file://{tmp_path}/shared"
        return
    root = f"memory://wb-{uuid.uuid4().hex}/cache"
    yield root
    fsspec.filesystem("memory").rm(root.removeprefix("memory://"), recursive=True)


def _fs(url: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def _uploads(url: str, entry_key: str) -> list[str]:
    """The token folders stored under an entry on the backend itself (not through the cache)."""
    fs, root = _fs(url)
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/{entry_key}", detail=False) if fs.isdir(p))


def _filler(content: bytes, calls: list[int]) -> Any:
    def fill(scratch: Path, facts: dict[str, Any]) -> None:
        calls.append(1)
        (scratch / "model.onnx").write_bytes(content)
        facts["seconds"] = 2.5

    return fill


def test_an_entry_made_through_one_mirror_is_a_hit_through_another(url, tmp_path):
    k = key("stage", "export", {"opset": 18})
    calls: list[int] = []
    folder, facts, was_cached = Cache.open(url, mirror=tmp_path / "a").fetch(k, _filler(b"weights", calls))
    made = (was_cached, facts, (folder / "model.onnx").read_bytes(), len(calls))
    assert made == (False, {"seconds": 2.5}, b"weights", 1)
    assert folder.parent == tmp_path / "a", "callers get a folder in the local mirror"
    other = Cache.open(url, mirror=tmp_path / "b")
    folder, facts, was_cached = other.fetch(k, _filler(b"other", calls))
    reused = (was_cached, facts, (folder / "model.onnx").read_bytes(), len(calls))
    assert reused == (True, {"seconds": 2.5}, b"weights", 1), "the second mirror must not fill again"
    assert folder.parent == tmp_path / "b"
    fs, root = _fs(url)
    manifest = json.loads(fs.cat_file(f"{root}/{k}/{MANIFEST}"))
    assert _uploads(url, k) == [manifest["data"]] and list(manifest["files"]) == ["model.onnx"]


def test_a_corrupted_shared_entry_is_detected_and_redone(url, tmp_path):
    k = key("stage", "quantize")
    calls: list[int] = []
    Cache.open(url, mirror=tmp_path / "a").fetch(k, _filler(b"int8 model", calls))
    fs, root = _fs(url)
    (bad_token,) = _uploads(url, k)
    fs.pipe_file(f"{root}/{k}/{bad_token}/model.onnx", b"int8 modeL")  # same size, one byte changed
    folder, _, was_cached = Cache.open(url, mirror=tmp_path / "b").fetch(k, _filler(b"int8 model", calls))
    assert (was_cached, (folder / "model.onnx").read_bytes(), len(calls)) == (False, b"int8 model", 2)
    (token,) = _uploads(url, k)
    assert token != bad_token, "the damaged upload is replaced, then dropped"
    folder, _, was_cached = Cache.open(url, mirror=tmp_path / "c").fetch(k, _filler(b"unused", calls))
    assert (was_cached, (folder / "model.onnx").read_bytes(), len(calls)) == (True, b"int8 model", 2)


def test_an_entry_without_its_manifest_is_not_served(url, tmp_path):
    """A writer killed after uploading its files but before its manifest leaves an incomplete entry."""
    k = key("reference")
    calls: list[int] = []
    Cache.open(url, mirror=tmp_path / "a").fetch(k, _filler(b"half", calls))
    fs, root = _fs(url)
    fs.rm_file(f"{root}/{k}/{MANIFEST}")
    fresh = Cache.open(url, mirror=tmp_path / "b")
    assert fresh.get(k) is None
    folder, _, was_cached = fresh.fetch(k, _filler(b"whole", calls))
    assert (was_cached, (folder / "model.onnx").read_bytes(), len(calls)) == (False, b"whole", 2)
    assert Cache.open(url, mirror=tmp_path / "c").get(k)[0].joinpath("model.onnx").read_bytes() == b"whole"


def test_force_replaces_the_shared_entry(url, tmp_path):
    k = key("charts")
    calls: list[int] = []
    Cache.open(url, mirror=tmp_path / "a").fetch(k, _filler(b"old", calls))
    (old,) = _uploads(url, k)
    Cache.open(url, mirror=tmp_path / "a").fetch(k, _filler(b"new", calls), force=True)
    assert len(calls) == 2 and _uploads(url, k) != [old] and len(_uploads(url, k)) == 1
    assert Cache.open(url, mirror=tmp_path / "b").get(k)[0].joinpath("model.onnx").read_bytes() == b"new"


def _script(
    url: str, mirror: Path, label: str, keys: list[str], signals: Path | None = None, size: int = 1
) -> list[str]:
    """The command of one separate process running ``SCRIPT``."""
    return [sys.executable, "-c", SCRIPT, url, str(mirror), label, ",".join(keys), str(signals or ""), str(size)]


ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_a_second_process_reuses_every_entry_the_first_made(tmp_path):
    url = f"file://{tmp_path}/shared"
    keys = [key("stage", i) for i in range(4)]
    runs = [
        subprocess.run(_script(url, tmp_path / f"m{i}", f"p{i}", keys), env=ENV, capture_output=True, text=True)
        for i in (1, 2)
    ]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    first, second = (json.loads(r.stdout) for r in runs)
    assert [first[k]["cached"] for k in keys] == [False] * 4
    assert [second[k]["cached"] for k in keys] == [True] * 4
    assert {second[k]["bytes"] for k in keys} == {"made by p1"} and second == {
        k: {**v, "cached": True} for k, v in first.items()
    }


def test_two_processes_filling_one_key_at_once_end_with_one_entry(tmp_path):
    """Both are inside ``fill`` at the same moment and publish together; a 40 MB file makes the upload outlast the
    gap between them, so both find no manifest, both upload, one wins the manifest's compare-and-set and the other
    drops its upload and adopts the winner's entry."""
    url = f"file://{tmp_path}/shared"
    signals = tmp_path / "signals"
    signals.mkdir()
    k = key("stage", "simplify")
    procs = [
        subprocess.Popen(
            _script(url, tmp_path / f"m{i}", f"p{i}", [k], signals, 40 << 20),
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = [json.loads(out)[k] for out, _ in outs]
    assert sorted(p.name for p in signals.iterdir()) == ["p1", "p2"], "both processes filled"
    assert [r["cached"] for r in results] == [False, False]
    assert results[0]["bytes"] == results[1]["bytes"] in {"made by p1", "made by p2"}
    assert len(_uploads(url, k)) == 1, "the losing upload is dropped"
    folder, facts = SharedCache(url, tmp_path / "m3").get(k)
    assert (folder / "model.onnx").read_bytes()[:10].decode() == results[0]["bytes"] and facts == results[0]["facts"]


def test_a_path_stays_a_local_cache_and_a_bad_url_is_one_line(tmp_path):
    for root in (tmp_path / "c", str(tmp_path / "c")):
        cache = Cache.open(root)
        assert type(cache) is Cache and cache.folder == tmp_path / "c"
    with pytest.raises(InputError, match=r"cache 'nosuchfs://x/y': .*fsspec URL"):
        Cache.open("nosuchfs://x/y", mirror=tmp_path / "m")


def test_a_manifest_naming_a_path_outside_its_entry_is_not_served(tmp_path):
    """A shared root is written by other machines: a manifest's file names must stay inside the entry."""
    url = f"file://{tmp_path}/shared"
    k = key("stage", "export")
    calls: list[int] = []
    Cache.open(url, mirror=tmp_path / "a").fetch(k, _filler(b"model", calls))
    fs, root = _fs(url)
    manifest = json.loads(fs.cat_file(f"{root}/{k}/{MANIFEST}"))
    fs.pipe_file(f"{root}/{k}/{manifest['data']}/../../escaped", b"model")
    digest = manifest["files"]["model.onnx"]
    fs.pipe_file(f"{root}/{k}/{MANIFEST}", json.dumps({**manifest, "files": {"../../escaped": digest}}).encode())
    mirror = tmp_path / "b"
    assert Cache.open(url, mirror=mirror).get(k) is None
    assert not (tmp_path / "escaped").exists() and not (mirror.parent / "escaped").exists()
