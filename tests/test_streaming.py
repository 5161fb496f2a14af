"""Evaluation of any size: the set is read once into a token file and every pass streams it a window at a time.

These tests run the real readers, the real token file and real writes of ``.npy`` files; the runner is a plain
numpy function of each sample (its logits say which sample it was and where it sat), so that a sample written
to the wrong row, a window cut across a batch, or a pass that holds the set whole is seen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from itertools import islice

import numpy as np
import pytest
from tiny_models import TINY_LSTM, save_tiny_lstm

from workbench import data, tokens, validate
from workbench import recipe as recipes
from workbench.evaluation import Evaluation, evaluation_of
from workbench.feeds import FeedSpec, InputSpec
from workbench.precision import FP32
from workbench.results import Run
from workbench.runtimes.base import Runner
from workbench.tokens import TokenFile

FEED = FeedSpec((InputSpec(name="text", feed="ids", dtype="int64", axes=("sequence", "batch")),), vocab_size=1000)


RECIPE = TINY_LSTM + """\
  classes: [negative, positive]
data: {synthetic: {size: %d, seed: 1, min_len: %d, max_len: %d}, batch_size: 64}
layer_errors: {enabled: false}
stages:
  - export: {exporter: torchscript}
"""
LONG = 24  # samples of 24-48 ids: no tuple of them is kept on Python's free lists, which would blur the figures


class Fingerprint(Runner):
    """Logits of each sample alone: [its first id, its length, its sum of ids]; no batch effect at all."""

    name, engine, precision, input_names = "fingerprint", "numpy", "fp32", ("text",)

    def __init__(self) -> None:
        self.batches: list[int] = []

    def infer(self, feeds):
        ids = feeds["text"].T  # [batch, sequence]: equal-length batches carry no padding
        self.batches.append(len(ids))
        return {"out": np.stack([ids[:, 0], np.full(len(ids), ids.shape[1]), ids.sum(1)], 1).astype(np.float32)}


def expected(samples: list[data.Sample]) -> np.ndarray:
    return np.array([[s.tokens[0], len(s.tokens), sum(s.tokens)] for s in samples], dtype=np.float32)


def synthetic(n: int) -> list[data.Sample]:
    return data.synthetic(n, seed=5, min_len=2, max_len=40)


def test_the_token_file_gives_back_every_sample_in_order_in_whole_batches():
    samples = synthetic(2 * tokens.WINDOW + 1000)
    file = TokenFile((s, 0) for s in samples)
    assert len(file) == len(samples) and list(file.lengths) == [len(s.tokens) for s in samples]
    read = []
    for start, window in file.windows(batch_size=100):
        assert start == len(read) and len(window) % 100 in (0, len(samples) % 100)
        assert len(window) <= tokens.WINDOW + 100
        read.extend(window)
    assert [tuple(s.tokens) for s in read] == [s.tokens for s in samples]
    assert [s.label for s in read] == [s.label for s in samples] == list(file.labels)
    assert [tuple(s.tokens) for s in file.head(3)] == [s.tokens for s in samples[:3]]
    assert file.where(7) == "sample 7"


def test_a_data_file_is_streamed_with_its_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"tokens": [11, 12], "label": 1}\n\n{"tokens": [13], "label": 0}\n')
    file = TokenFile(data.jsonl_stream(path, vocab_size=1000), origin=str(path))
    assert [tuple(s.tokens) for s in file.head(2)] == [(11, 12), (13,)]
    assert file.where(1) == f"{path}:3"


def test_streamed_logits_land_on_their_samples_rows(tmp_path):
    samples = synthetic(3 * tokens.WINDOW + 17)
    file = TokenFile((s, 0) for s in samples)
    runner = Fingerprint()
    validate.write_logits(runner, file.windows(64), len(file), FEED, tmp_path / "logits.npy", batch_size=64)
    written = np.load(tmp_path / "logits.npy")
    assert np.array_equal(written, expected(samples))
    assert max(runner.batches) <= 64
    # the same samples at once, as before streaming: the same rows
    assert np.array_equal(validate.logits(Fingerprint(), samples, FEED, batch_size=64), written)


def test_the_first_batch_checks_the_classes_before_the_pass_goes_on(tmp_path):
    file = TokenFile((s, 0) for s in synthetic(500))
    runner = Fingerprint()

    def refuse(classes: int) -> None:
        raise ValueError(f"{classes} classes")

    with pytest.raises(ValueError, match="3 classes"):
        validate.write_logits(runner, file.windows(8), len(file), FEED, tmp_path / "l.npy", batch_size=8, check=refuse)
    assert runner.batches == [runner.batches[0]]  # refused after one batch, not after the set


def test_comparing_in_blocks_gives_the_figures_of_comparing_at_once(monkeypatch):
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(1001, 3)).astype(np.float32)
    candidate = reference + rng.normal(scale=0.3, size=reference.shape).astype(np.float32)
    labels = rng.integers(0, 3, size=1001)
    whole = validate.compare(candidate, reference, labels, rtol=1e-3)
    monkeypatch.setattr(validate, "COMPARE_ROWS", 7)
    blocks = validate.compare(candidate, reference, labels, rtol=1e-3)
    assert blocks.model_dump() == pytest.approx(whole.model_dump(), rel=1e-12)
    diff = np.abs(candidate.astype(np.float64) - reference)
    assert whole.max_abs_error == diff.max() and whole.mean_abs_error == pytest.approx(diff.mean(), rel=1e-12)
    assert whole.agreement == np.mean(candidate.argmax(1) == reference.argmax(1))


def test_a_nan_output_fails_every_limit_as_comparing_at_once_did():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(100, 2)).astype(np.float32)
    candidate = reference.copy()
    candidate[7, reference[7].argmax()] = np.nan
    result = validate.compare(candidate, reference, np.zeros(100, dtype=np.int64), rtol=FP32.accept.rtol or 0.0)
    assert np.isnan(result.max_abs_error) and np.isnan(result.max_excess) and np.isnan(result.mean_abs_error)
    assert not validate.judge(result, FP32.accept).passed


def test_one_block_gives_exactly_the_figures_of_the_whole_array_formulas():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(500, 2)).astype(np.float32)
    candidate = reference + rng.normal(scale=1e-3, size=reference.shape).astype(np.float32)
    result = validate.compare(candidate, reference, np.ones(500, dtype=np.int64), rtol=1e-3)
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    assert result.max_abs_error == float(diff.max())
    assert result.max_rel_error == float((diff / (np.abs(reference.astype(np.float64)) + validate.REL_EPSILON)).max())
    assert result.max_excess == float((diff - 1e-3 * np.abs(reference.astype(np.float64))).max())


def _peak(step) -> int:
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_reading_and_a_pass_does_not_grow_with_the_set(project, monkeypatch):
    """A recipe's evaluation set of 8 windows, read and run through a pass, peaks where one of 2 windows does
    (Python and numpy allocations, traced; a pass holds the window it reads and, until then, the one before): the
    set is never held whole, only 24 bytes per sample of labels, lines and offsets."""
    save_tiny_lstm(project)
    monkeypatch.setattr(tokens, "WINDOW", 1024)  # smaller windows, the same code: a quicker test
    small, large = 2 * tokens.WINDOW, 8 * tokens.WINDOW
    built: dict[int, Evaluation] = {}
    read, passed = {}, {}
    for n in (64, small, large):  # the first builds what any evaluation builds once (imports, caches)
        (project / f"r{n}.yaml").write_text(RECIPE % (n, LONG, 2 * LONG))
        loaded = recipes.load(project / f"r{n}.yaml")
        read[n] = _peak(lambda: built.setdefault(n, evaluation_of(loaded)))  # noqa: B023
        (project / f"out{n}").mkdir()
        passed[n] = _peak(lambda: built[n].outputs(Fingerprint(), project / f"out{n}"))  # noqa: B023
        assert np.load(project / f"out{n}" / "logits.npy").shape == (n, 3)
    per_sample = 24 * (large - small)
    assert read[large] < read[small] + 4 * per_sample, (read, per_sample)  # the arrays grow by doubling
    assert passed[large] < 1.2 * passed[small], passed
    stream = data.synthetic_stream(seed=1, min_len=LONG, max_len=2 * LONG)
    held_whole = _peak(lambda: list(islice(stream, large - small)))  # what holding the added samples would cost
    assert held_whole > 3 * 4 * per_sample and held_whole > passed[small], (held_whole, per_sample, passed)


def test_a_run_streams_a_set_of_several_windows_and_bounds_pytorchs_shape_cache(project):
    """A real run over more samples than a window: the reference and the check see every sample. oneDNN's cache of
    compiled shapes (it held ~300 MB over an evaluation set's shapes) is bounded, and the report's environment says
    so; a bound the user set is kept."""
    save_tiny_lstm(project)
    size = 2 * tokens.WINDOW + 5
    (project / "big.yaml").write_text(RECIPE % (size, 3, 12))
    clean = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    # the second run reuses every entry (no torch kernel runs in it): the setting is recorded all the same
    for env, force, want in (({}, True, "16"), ({}, False, "16"), ({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "3"}, True, "3")):
        done = subprocess.run(
            [sys.executable, "-m", "workbench", "run", "big.yaml", "--no-bench", "--quiet", *(["--force"] * force)],
            cwd=project, env={**clean, **env}, capture_output=True, text=True, check=False,
        )
        assert done.returncode == 0, done.stderr
        run = Run.load((project / "reports" / "big" / "metrics.json").read_text())
        assert run.environment.timing_settings["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == want
        assert run.reference.cached == (not force)
    assert run.reference.samples == size == run.data_facts.samples
    labels = [s.label for s in data.synthetic(size, seed=1, min_len=3, max_len=12)]
    assert run.data_facts.label_counts == (labels.count(0), labels.count(1))
    check = run.stages[0].checks[0].check
    assert check.passed and check.comparison.samples == size and check.comparison.max_abs_error < 1e-5
