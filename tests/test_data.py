from __future__ import annotations

import json

import numpy as np
import pytest

from workbench import data
from workbench.errors import InputError


def _load_jsonl(path, **kwargs) -> list[data.Sample]:
    return [sample for sample, _ in data.jsonl_stream(path, **kwargs)]


def test_synthetic_is_deterministic_for_a_seed_and_splits_differ():
    a = data.synthetic(50, seed=3)
    assert a == data.synthetic(50, seed=3)
    assert a != data.synthetic(50, seed=4)
    assert a != data.synthetic(50, seed=3, split="train")


def test_synthetic_labels_follow_the_majority_rule_and_lengths_vary():
    samples = data.synthetic(300, seed=0, min_len=8, max_len=256)
    for s in samples:
        positive = sum(t in data.POSITIVE_IDS for t in s.tokens)
        negative = sum(t in data.NEGATIVE_IDS for t in s.tokens)
        assert s.label == int(positive > negative) and positive != negative
        assert all(0 <= t < 1000 for t in s.tokens)
    lengths = {len(s.tokens) for s in samples}
    assert min(lengths) < 40 and max(lengths) > 220
    assert 0.35 < np.mean([s.label for s in samples]) < 0.65


def test_jsonl_round_trip(tmp_path):
    samples = data.synthetic(20, seed=1)
    data.write_jsonl(samples, tmp_path / "d.jsonl")
    assert _load_jsonl(tmp_path / "d.jsonl", vocab_size=1000) == samples


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"d.jsonl:2: not valid JSON"),
        ('{"tokens": [1, 2]}', r"d.jsonl:2: expected an object with exactly the keys"),
        ('{"tokens": [1], "label": 0, "x": 1}', r"d.jsonl:2: expected an object"),
        ("[1, 2]", r"d.jsonl:2: expected an object .* got list"),
        ('{"tokens": [], "label": 0}', r"d.jsonl:2: tokens must be a non-empty list"),
        ('{"tokens": [1, 1000], "label": 0}', r"d.jsonl:2: tokens\[1\] = 1000 is not a token id in \[0, 999\]"),
        ('{"tokens": [1, -2], "label": 0}', r"tokens\[1\] = -2"),
        ('{"tokens": [true], "label": 0}', r"tokens\[0\] = True"),
        ('{"tokens": [1.5], "label": 0}', r"tokens\[0\] = 1.5"),
        ('{"tokens": [1], "label": "pos"}', r"d.jsonl:2: label = 'pos' is not a class index"),
        ('{"tokens": [1], "label": -1}', r"label = -1"),
    ],
)
def test_bad_jsonl_rows_are_named_by_line(tmp_path, line, message):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"tokens": [1, 2], "label": 1}) + "\n" + line + "\n")
    with pytest.raises(InputError, match=message):
        _load_jsonl(path, vocab_size=1000)


def test_missing_and_empty_jsonl(tmp_path):
    with pytest.raises(InputError, match="data file not found"):
        _load_jsonl(tmp_path / "none.jsonl")
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="no samples"):
        _load_jsonl(tmp_path / "e.jsonl")


def test_batches_group_equal_lengths_and_cover_every_sample():
    samples = data.synthetic(200, seed=2, min_len=5, max_len=12)
    seen = []
    for batch in data.batches(samples, max_batch=16):
        assert batch.tokens.shape[0] == len(batch.labels) <= 16
        assert batch.mask.all()  # equal lengths: no padding
        for row, index in enumerate(batch.indices):
            assert tuple(batch.tokens[row]) == samples[index].tokens
        seen += batch.indices.tolist()
    assert sorted(seen) == list(range(200))


def test_padded_batches_keep_order_and_mask_the_padding():
    samples = data.synthetic(50, seed=3, min_len=3, max_len=30)
    seen = []
    for batch in data.padded_batches(samples, max_batch=8):
        longest = max(len(samples[i].tokens) for i in batch.indices)
        assert batch.tokens.shape == batch.mask.shape == (len(batch.indices), longest)
        for row, index in enumerate(batch.indices):
            n = len(samples[index].tokens)
            assert tuple(batch.tokens[row, :n]) == samples[index].tokens
            assert batch.mask[row, :n].all() and not batch.mask[row, n:].any()
            assert (batch.tokens[row, n:] == data.PAD_ID).all()
        seen += batch.indices.tolist()
    assert seen == list(range(50))
    assert any(not b.mask.all() for b in data.padded_batches(samples, max_batch=8))  # some padding happened


def test_feeds_lay_out_and_type_each_declared_input():
    from workbench.feeds import FeedSpec, InputSpec

    tokens = np.arange(6).reshape(2, 3) + 10
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    inputs = (
        InputSpec(name="ids", feed="ids", axes=("sequence", "batch")),
        InputSpec(name="mask", feed="mask", dtype="int32", axes=("batch", "sequence")),
        InputSpec(name="segments", feed="zeros", axes=("batch", "sequence")),
    )
    out = FeedSpec(inputs, vocab_size=100).feeds(tokens, mask)
    assert list(out) == ["ids", "mask", "segments"]
    assert np.array_equal(out["ids"], tokens.T) and out["ids"].dtype == np.int64 and out["ids"].flags.c_contiguous
    assert np.array_equal(out["mask"], mask) and out["mask"].dtype == np.int32
    assert out["segments"].shape == (2, 3) and not out["segments"].any()
