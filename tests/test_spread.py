"""``run --ray``: each validation pass split across Ray workers on a real local cluster, with the figures of a run
in one process."""

from __future__ import annotations

import re

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


def test_a_worker_without_the_file_gets_it_through_the_object_store(project, tmp_path):
    """A node never sees another's cache: the worker opens its own copy only when it has the same sha256, and
    otherwise the bytes the caller shipped; either way the logits of the same file."""
    from workbench import data
    from workbench.feeds import FeedSpec, InputSpec
    from workbench.spread import RunnerSpec, Worker
    from workbench.store.files import file_sha256

    save_tiny_lstm(project)
    (project / "one.yaml").write_text(RECIPE % 64)
    assert main(["run", str(project / "one.yaml"), "--no-bench", "--quiet"]) == 0
    artifact = Run.load((project / "reports/one/metrics.json").read_text()).stages[0].artifact
    onnx = next((project / ".workbench-cache").rglob("export.onnx"))
    assert file_sha256(onnx) == artifact.sha256
    feed = FeedSpec((InputSpec(name="text"),), vocab_size=120)
    samples = data.synthetic(40, seed=3, min_len=3, max_len=9, vocab_size=120)
    elsewhere = tmp_path / "elsewhere" / "export.onnx"  # a path this "node" lacks
    specs = {
        "own copy": RunnerSpec("", "onnxruntime", {}, str(onnx), artifact.sha256, "own"),
        "missing here": RunnerSpec("", "onnxruntime", {}, str(elsewhere), artifact.sha256, "shipped"),
        "another file here": RunnerSpec("", "onnxruntime", {}, str(project / "tiny.pt"), artifact.sha256, "shipped"),
    }
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        shipped = [ray.put(onnx.read_bytes())]
        got = {}
        for label, spec in specs.items():
            worker = ray.remote(Worker).remote(spec, shipped)
            got[label] = ray.get(worker.logits.remote(samples, feed, 8, False))
            ray.kill(worker)
    finally:
        ray.shutdown()
    assert got["own copy"].shape == (40, 2)
    assert (got["missing here"] == got["own copy"]).all() and (got["another file here"] == got["own copy"]).all()


@pytest.mark.parametrize("resources, args, words", [
    ({}, ["--workers", "3"], "--workers 3: the cluster's nodes have 2 CPUs, room for 2 workers"),
    ({"another type": 1}, [], "--ray: the cluster's nodes of type {local} have 0 CPUs; a worker needs 1"),
])
def test_a_split_the_cluster_cannot_hold_is_refused_before_any_work(project, capsys, resources, args, words):
    """Workers beyond the CPUs of the nodes they may use would wait for a place for ever; a node of another CPU
    type is not one of those (a check is keyed by this machine's type)."""
    from workbench.machines import NAMES, cpu_type

    local = cpu_type()
    resources = {next(n for n in NAMES if n != local) if k == "another type" else k: v for k, v in resources.items()}
    words = words.format(local=local)
    save_tiny_lstm(project)
    (project / "split.yaml").write_text(RECIPE % 100)
    ray.init(num_cpus=2, resources=resources, include_dashboard=False, log_to_driver=False)
    try:
        code = main(["run", str(project / "split.yaml"), "--no-bench", "--quiet", "--ray", "auto", *args])
    finally:
        ray.shutdown()
    assert code == 2
    assert words in capsys.readouterr().err
    assert not (project / "reports").exists() and not (project / ".workbench-cache").exists(), "no work was done"


def test_workers_that_get_no_place_fail_the_pass_instead_of_waiting(project, capsys, monkeypatch):
    """More workers than the cluster has CPUs (as when other work took them after the count was checked)."""
    from workbench import spread

    save_tiny_lstm(project)
    (project / "split.yaml").write_text(RECIPE % 100)
    counted = spread.Spread.place
    monkeypatch.setattr(spread.Spread, "place", lambda self: (3, counted(self)[1]))
    monkeypatch.setattr(spread, "PLACE_SECONDS", 5)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(["run", str(project / "split.yaml"), "--no-bench", "--quiet", "--ray", "auto"])
    finally:
        ray.shutdown()
    assert code == 2
    err = capsys.readouterr().err
    unplaced = re.search(r"--ray: (\d) of 3 Ray workers for reference got no place within 5 s", err)
    assert unplaced and int(unplaced[1]) >= 1, err  # one worker has no CPU
    if int(unplaced[1]) == 3:  # the two that have one took over 5 s to start too (a busy machine: torch import)
        pytest.skip(f"the placed Ray workers did not start within 5 s either: {err.strip()}")
