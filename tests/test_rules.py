"""The verdict rules the report rests on, each made to decide by a model or an engine defined here (issue 15, item 5):
a stage no engine ran, a stage one engine passes and another fails, the padding check, and PyTorch's thread count."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from workbench.cli import main
from workbench.data import PAD_ID
from workbench.results import Run
from workbench.runtimes import ENGINES, EngineParams, NotApplicable, Runner, engine
from workbench.runtimes import onnxruntime as ort_engine

HERE = Path(__file__).resolve().parent
VOCAB = 120
SAMPLES = 24
BATCH = 8
OFFSET = 1e-3  # far beyond the fp32 rule (1e-5 + 1e-5 x |reference|), and it moves no argmax


class MaskedMean(nn.Module):
    """Embeddings averaged over the real tokens only (the mask's ones), then a linear head: padding changes nothing."""

    def __init__(self, vocab_size: int = VOCAB, dim: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask.unsqueeze(-1).to(torch.float32)
        return self.head((self.embed(input_ids) * keep).sum(1) / keep.sum(1).clamp(min=1.0))


class MeanOverEveryPosition(MaskedMean):
    """Zeroes padded positions but averages over every position, padding included: padding changes the logits."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask.unsqueeze(-1).to(torch.float32)
        return self.head((self.embed(input_ids) * keep).mean(1))


THREADS_SEEN: list[int] = []  # torch.get_num_threads() at every forward call of ThreadRecorder


class ThreadRecorder(MaskedMean):
    """MaskedMean that records the PyTorch thread count it runs under, at every call."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        THREADS_SEEN.append(torch.get_num_threads())
        return super().forward(input_ids, attention_mask)


RECIPE = """\
root: {root}
reports: {tmp}/reports
cache: {tmp}/cache
model:
  class: test_rules:{cls}
  weights: {tmp}/weights.pt
  inputs:
    - {{name: input_ids, feed: ids, dtype: int64, axes: [batch, sequence]}}
    - {{name: attention_mask, feed: mask, dtype: int64, axes: [batch, sequence]}}
  vocab_size: {vocab}
data: {{synthetic: {{size: {samples}, seed: 1, min_len: 3, max_len: 12}}, batch_size: {batch}, min_samples: 8}}
runtimes: [{runtimes}]
bench: {{budget_seconds: 0.02, latency_lengths: [4], throughput: {{batch: 2, length: 4}}, chart_lengths: [2, 4], tune: false}}
layer_errors: {{enabled: false}}
stages:
  - export: {{exporter: torchscript}}
"""


def _recipe(tmp: Path, cls: type[nn.Module], runtimes: str) -> Path:
    """A recipe for ``cls`` (fresh seeded weights) on ``runtimes``, with its reports and cache under ``tmp``."""
    torch.manual_seed(0)
    torch.save(cls().state_dict(), tmp / "weights.pt")
    path = tmp / "rule.yaml"
    path.write_text(
        RECIPE.format(
            root=HERE, tmp=tmp, cls=cls.__name__, vocab=VOCAB, samples=SAMPLES, batch=BATCH, runtimes=runtimes
        )
    )
    return path


def _run(recipe: Path, *extra: str) -> tuple[int, Run, str]:
    """``workbench run`` in this process (so engines registered here exist): exit code, run model, report text."""
    code = main(["run", str(recipe), "--quiet", *extra])
    folder = recipe.parent / "reports" / recipe.stem
    return code, Run.load((folder / "metrics.json").read_text()), (folder / "report.md").read_text()


class Wrapped(Runner):
    """onnxruntime's runner under another engine name, with a hook on what goes in and comes out."""

    def __init__(self, inner: Runner, engine_name: str):
        self.inner, self.engine = inner, engine_name
        self.name, self.precision, self.input_names = inner.name, inner.precision, inner.input_names

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner.infer(feeds)


class Offset(Wrapped):
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: value + np.float32(OFFSET) for name, value in self.inner.infer(feeds).items()}


RECEIVED: list[dict[str, np.ndarray]] = []  # every batch the recording engine was given


class Recording(Wrapped):
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        RECEIVED.append({name: array.copy() for name, array in feeds.items()})
        return self.inner.infer(feeds)


@pytest.fixture
def test_engines() -> Iterator[None]:
    """Three engines registered the way a user adds one, removed afterwards."""

    @engine("refuses-all")
    def refuse(path: Path, params: EngineParams, threads: int) -> Runner:
        raise NotApplicable(f"this engine refuses every file ({path.name})")

    @engine("ort-offset")
    def offset(path: Path, params: EngineParams, threads: int) -> Runner:
        return Offset(ort_engine.load_file(path, threads), "ort-offset")

    @engine("records-batches")
    def recording(path: Path, params: EngineParams, threads: int) -> Runner:
        return Recording(ort_engine.load_file(path, threads), "records-batches")

    RECEIVED.clear()
    yield
    for name in ("refuses-all", "ort-offset", "records-batches"):
        del ENGINES[name]


def test_a_stage_every_engine_refuses_does_not_pass(tmp_path, test_engines):
    code, run, report = _run(_recipe(tmp_path, MaskedMean, "refuses-all"), "--no-bench")
    assert code == 1 and not run.passed
    (record,) = run.stages
    (check,) = record.checks
    assert check.not_applicable == "this engine refuses every file (export.onnx)" and check.check is None
    assert not record.passed and record.verdict == "FAILED"
    assert "no engine could run the artifact" in record.failures
    assert report.startswith("# rule: FAILED") and "export: no engine could run the artifact" in report


def test_a_stage_that_fails_on_one_engine_fails_though_another_passes(tmp_path, test_engines, capsys):
    code, run, report = _run(_recipe(tmp_path, MaskedMean, "onnxruntime, ort-offset"), "--no-bench")
    assert code == 1 and not run.passed
    (record,) = run.stages
    ort, offset = record.checks
    assert ort.row == "onnxruntime:export" and ort.passed and ort.check.comparison.max_abs_error < 1e-5
    assert offset.row == "ort-offset:export" and not offset.passed
    assert abs(offset.check.comparison.max_abs_error - OFFSET) < 1e-5
    assert offset.check.comparison.agreement == 1.0  # only the size of the error decides here
    assert offset.check.failures == ("max abs error 0.001 > limit 1e-05 + 1e-05 x |reference|",)
    assert not record.passed and record.failures == (
        "ort-offset:export: max abs error 0.001 > limit 1e-05 + 1e-05 x |reference|",
    )
    rows = _summary_rows(report)
    assert rows["onnxruntime:export"][-2:] == ["passed", FP32_RULE]
    failed = rows["ort-offset:export"]  # the failed row keeps its figures and the rule that failed it
    assert failed[5] == "1.00e-03" and failed[7] == "100.00%" and failed[-2:] == ["FAILED", FP32_RULE]
    assert "**FAILED**: export: ort-offset:export: max abs error 0.001" in report
    assert "- **FAILED** on ort-offset: max abs error 0.001 > limit" in report.split("\n## export", 1)[1]
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "reports" / "rule"), "--format", "json"]) == 0
    compared = {(r[0], r[1]): r[2] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert compared["ort-offset:export", "agreement"] == "100.00%"  # a failed row's figures reach compare too


FP32_RULE = "fp32: |diff| <= 1e-05 + 1e-05 x |reference|, agreement >= 100.0%, accuracy drop <= 0.00 points"


def _table_rows(text: str) -> dict[str, list[str]]:
    """Row name -> cells of the first markdown table in ``text`` (cells are joined by " | "; a rule's |diff| is not)."""
    body = text.split("\n| row |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    rows = [line[2:-2].split(" | ") for line in body]
    return {cells[0]: cells for cells in rows}


def _summary_rows(report: str) -> dict[str, list[str]]:
    return _table_rows(report)


def _padded(batches: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    return [b for b in batches if (b["attention_mask"] == 0).any()]


def test_the_padded_run_sends_mixed_length_batches_with_the_mask_set(tmp_path, test_engines):
    code, run, report = _run(_recipe(tmp_path, MaskedMean, "records-batches"), "--no-bench")
    assert code == 0, run.stages[0].failures
    padded = _padded(RECEIVED)
    assert padded, "no batch the engine received had a zero in its mask"
    for batch in padded:
        tokens, mask = batch["input_ids"], batch["attention_mask"]
        lengths = mask.sum(1)
        assert len(set(lengths.tolist())) > 1  # rows of different true lengths in one batch
        assert lengths.max() == mask.shape[1] and lengths.min() < mask.shape[1]  # padded to its longest row
        for row, n in zip(mask, lengths):
            assert row[:n].all() and not row[n:].any()  # the mask marks the real tokens, padding at the end
        assert (tokens[mask == 0] == PAD_ID).all() and (tokens[mask == 1] != PAD_ID).all()
    assert sum(len(b["attention_mask"]) for b in padded) >= SAMPLES - BATCH  # nearly every sample went padded
    (check,) = run.stages[0].checks
    assert check.padding is not None and check.padding.passed
    assert check.padding.comparison.samples == SAMPLES and check.padding.comparison.max_abs_error < 1e-5
    assert "| records-batches:export |" in report.split("### Padding", 1)[1]


def test_a_model_whose_logits_change_with_padding_fails_the_padding_rule(tmp_path):
    code, run, report = _run(_recipe(tmp_path, MeanOverEveryPosition, "onnxruntime"), "--no-bench")
    assert code == 1 and not run.passed
    assert run.reference.padding is not None and not run.reference.padding.passed
    (record,) = run.stages
    (check,) = record.checks
    assert check.check.passed  # unpadded, the file matches PyTorch: only the padding rule fails it
    assert check.padding is not None and check.padding.comparison.max_abs_error > 1e-3
    assert not check.passed and not record.passed
    assert any(f.startswith("onnxruntime:export: padded batches: max abs error") for f in record.failures)
    rows = _table_rows(report.split("### Padding", 1)[1])
    assert rows["onnxruntime:export"][3].startswith("FAILED: max abs error 0.")  # the failed row is in the table
    assert rows["onnxruntime:export"][4] == FP32_RULE and rows["pytorch fp32"][3] == "FAILED"


@pytest.mark.skipif(
    (os.cpu_count() or 1) < 2, reason="one core: --threads 1 and 2 cannot be told apart from the default"
)
@pytest.mark.parametrize("threads, before", [(1, 2), (2, 1)])
def test_pytorch_runs_on_the_threads_asked_for(tmp_path, threads, before):
    """Before the run, PyTorch is set to the other count: a runner that ignores --threads records that one."""
    kept = torch.get_num_threads()
    torch.set_num_threads(before)
    THREADS_SEEN.clear()
    try:
        code, run, _ = _run(_recipe(tmp_path, ThreadRecorder, "onnxruntime"), "--threads", str(threads))
    finally:
        torch.set_num_threads(kept)
    assert code == 0, run.stages[0].failures
    assert run.bench is not None and run.bench.threads == threads and run.environment.threads == threads
    assert len(THREADS_SEEN) > SAMPLES // BATCH  # the reference's batches, the export, the timed calls
    assert set(THREADS_SEEN) == {threads}, f"--threads {threads}: forward ran under {sorted(set(THREADS_SEEN))}"
