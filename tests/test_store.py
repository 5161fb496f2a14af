from __future__ import annotations

import pytest

from workbench.store.cache import Cache
from workbench.store.files import key


def test_entry_is_whole_or_absent_and_verified_by_hash(tmp_path):
    cache = Cache(tmp_path / "c")
    k = key("stage", {"a": 1})
    assert cache.get(k) is None
    with cache.put(k) as (folder, facts):
        (folder / "x.onnx").write_bytes(b"model bytes")
        facts["seconds"] = 1.5
    folder, facts = cache.get(k)
    assert (folder / "x.onnx").read_bytes() == b"model bytes" and facts == {"seconds": 1.5}
    (folder / "x.onnx").write_bytes(b"model bytez")  # altered after the fact
    assert cache.get(k) is None
    with cache.put(k) as (folder, facts):  # a new entry replaces the untrusted one
        (folder / "x.onnx").write_bytes(b"fresh")
    assert (cache.get(k)[0] / "x.onnx").read_bytes() == b"fresh"


def test_failed_writer_leaves_nothing(tmp_path):
    cache = Cache(tmp_path / "c")
    with pytest.raises(RuntimeError):
        with cache.put("k1") as (folder, _):
            (folder / "half.onnx").write_bytes(b"half")
            raise RuntimeError("stage crashed")
    assert cache.get("k1") is None
    assert list((tmp_path / "c").iterdir()) == []


def test_keys_are_stable_and_distinct():
    assert key("a", {"x": 1, "y": 2}) == key("a", {"y": 2, "x": 1})
    assert key("a", 1) != key("a", 2)


def test_an_entry_another_writer_put_in_place_first_is_kept(tmp_path):
    """Two runs (of recipes sharing one cache) compute the same entry: the second keeps the first one's entry,
    so a reader of it never finds it half-swapped; --force (replace=True) puts the new one in place."""
    cache = Cache(tmp_path / "c")
    with cache.put("k") as (second, _):
        (second / "a.onnx").write_bytes(b"second")
        with cache.put("k") as (first, _):  # finishes first
            (first / "a.onnx").write_bytes(b"first")
    assert (cache.get("k")[0] / "a.onnx").read_bytes() == b"first"
    with cache.put("k", replace=True) as (forced, _):
        (forced / "a.onnx").write_bytes(b"forced")
    assert (cache.get("k")[0] / "a.onnx").read_bytes() == b"forced"
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["k"]
