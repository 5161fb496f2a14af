"""``run --ray``: each validation pass split across Ray workers on a real local cluster, with the figures of a run
in one process."""

from __future__ import annotations

import pytest
from tiny_models import TINY_LSTM, save_tiny_lstm

from workbench import tokens
from workbench.cli import main
from workbench.results import Run

ray = pytest.importorskip("ray")

RECIPE = TINY_LSTM + """\
data: {synthetic: {size: %d, seed: 1, min_len: 3, max_len: 12}, batch_size: 64}
layer_errors: {enabled: false}
stages:
  - export: {exporter: torchscript}
  - quantize_dynamic: {op_types: [LSTM, Gemm]}
"""


def _figures(run: Run) -> list[tuple]:
    rows = [("reference", run.reference.samples, run.reference.accuracy)]
    for stage in run.stages:
        for check in stage.checks:
            c = check.check.comparison
            rows.append((check.row, c.samples, c.agreement, c.accuracy, c.max_abs_error, c.mean_abs_error))
    return rows


def test_a_run_split_across_ray_workers_gives_the_figures_of_one_process(project, capsys):
    save_tiny_lstm(project)
    size = 2 * tokens.WINDOW + 5  # three windows
    (project / "split.yaml").write_text(RECIPE % size)
    report = project / "reports" / "split" / "metrics.json"
    assert main(["run", str(project / "split.yaml"), "--no-bench", "--quiet", "--threads", "1"]) == 0
    alone = Run.load(report.read_text())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(["run", str(project / "split.yaml"), "--no-bench", "--quiet", "--force", "--ray", "auto",
                     "--threads", "1"])
        assert code == 0, capsys.readouterr().err
    finally:
        ray.shutdown()
    split = Run.load(report.read_text())
    assert not split.reference.cached and not any(c.cached for s in split.stages for c in s.checks)
    worked = split.environment.split
    assert (worked.workers, worked.threads, worked.passes) == (2, 1, 3), "the reference and two checks on 2 workers"
    assert worked.peak_worker_rss_mb > 50, "measured in the worker processes, which load torch and onnxruntime"
    assert alone.environment.split is None
    assert "- validation: 3 passes split across 2 Ray workers of 1 thread each; the largest worker peaked at" in (
        report.parent / "report.md"
    ).read_text()
    assert _figures(split) == _figures(alone)
    assert split.stages[1].checks[0].batch_dependence == alone.stages[1].checks[0].batch_dependence


def test_workers_without_ray_is_refused(project, capsys):
    save_tiny_lstm(project)
    (project / "split.yaml").write_text(RECIPE % 100)
    assert main(["run", str(project / "split.yaml"), "--workers", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers needs --ray and must be >= 1"
