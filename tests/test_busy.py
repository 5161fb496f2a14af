"""A real run beside a bounded CPU hog says the machine was busy, caches no suite and saves no tuning; the same run
on a quiet machine is not flagged (skipped, with the measured load, when the machine running the tests is busy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import TINY_LSTM, save_tiny_lstm

from workbench.cli import main
from workbench.results import Run
from workbench.timing import load

RECIPE = TINY_LSTM + """\
data: {synthetic: {size: 24, seed: 1, min_len: 3, max_len: 12}, batch_size: 8, min_samples: 8}
layer_errors: {enabled: false}
bench: {budget_seconds: 0.3, latency_lengths: [8], throughput: {batch: 2, length: 8}, chart_lengths: [4, 8]}
stages:
  - export: {exporter: torchscript}
  - quantize_dynamic: {op_types: [LSTM, Gemm]}
"""


@pytest.fixture
def tiny(project: Path) -> Path:
    save_tiny_lstm(project)
    (project / "busy.yaml").write_text(RECIPE)
    return project


def _run(project: Path, capsys) -> tuple[Run, str]:
    assert main(["run", str(project / "busy.yaml"), "--rebench"]) == 0
    folder = project / "reports" / "busy"
    return Run.load((folder / "metrics.json").read_text()), capsys.readouterr().out


def test_a_run_beside_a_cpu_hog_is_flagged_not_cached_and_not_tuned_on(tiny, capsys):
    with load.Hog(seconds=120):
        run, out = _run(tiny, capsys)
    assert not run.bench.quiet and run.bench.busy_reasons
    assert all("busy" in reason for reason in run.bench.busy_reasons)
    assert "the machine was busy while timing" in out
    report = (tiny / "reports" / "busy" / "report.md").read_text()
    assert "**The machine was busy while timing: these figures are not reliable.**" in report
    assert not list((tiny / "reports" / "busy").glob("*.session.json")), "a tuning choice made under load was saved"
    assert all(t.chosen == 0 and not t.load.quiet for t in run.bench.tunings)
    with load.Hog(seconds=120):  # still busy: the suite was not cached, so it is measured again
        again, _ = _run_without_rebench(tiny, capsys)
    assert not again.bench.cached


def _run_without_rebench(project: Path, capsys) -> tuple[Run, str]:
    assert main(["run", str(project / "busy.yaml")]) == 0
    return Run.load((project / "reports" / "busy" / "metrics.json").read_text()), capsys.readouterr().out


def test_the_same_run_on_a_quiet_machine_is_not_flagged(tiny, capsys):
    with load.Monitor() as probe:
        import time

        time.sleep(1.0)
    if probe.report.busy:
        pytest.skip(f"the machine running the tests is busy: {probe.report.reason}")
    run, out = _run(tiny, capsys)
    if not run.bench.quiet:
        pytest.skip("the machine got busy during the run: " + "; ".join(run.bench.busy_reasons))
    assert "the machine was busy" not in out
    assert "The machine was quiet while timing" in (tiny / "reports" / "busy" / "report.md").read_text()
    again, _ = _run_without_rebench(tiny, capsys)
    assert again.bench.cached  # a quiet suite is cached
    saved = list((tiny / "reports" / "busy").glob("*.session.json"))
    assert saved and json.loads(saved[0].read_text())["engine"] == "onnxruntime"
