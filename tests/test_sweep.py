"""``workbench sweep`` in this process and on a real two-node Ray cluster, and one cache shared by two processes.

Two tiny recipes (a bag-of-embeddings MLP and a batch-first LSTM from tests/tiny_models.py, 64 samples, a tiny
benchmark budget) in a temporary project; every run is real (torch export, onnxsim, the quantizer, onnxruntime).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from workbench.cli import main
from workbench.commands import sweep
from workbench.commands.compare import load
from workbench.machines import cpu_type
from workbench.results import Run

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SETTINGS = """\
data:
  synthetic: {size: 64, seed: 5, min_len: 4, max_len: 24}
  batch_size: 16
threads: 1
bench: {budget_seconds: 0.05, latency_lengths: [16], throughput: {batch: 4, length: 16}, chart_lengths: [8, 16], tune: false}
"""
LOOSE = "accept: {min_agreement: 0.5, max_accuracy_drop: 0.5}"  # random weights: int8 agreement is not the point
RECIPES = {
    "mlp": "model: {class: tiny_models:BagMLP, weights: mlp.pt}\nlayer_errors: {enabled: false}\n" + SETTINGS
    + f"stages:\n  - export: {{exporter: torchscript}}\n  - simplify: {{}}\n  - quantize_dynamic: {{op_types: [Gemm, MatMul], {LOOSE}}}\n",
    "bf": "model:\n  class: tiny_models:BatchFirstLSTM\n  weights: bf.pt\n  inputs: [{name: text, axes: [batch, sequence]}]\n"
    + "layer_errors: {enabled: false}\n" + SETTINGS
    + f"stages:\n  - export: {{exporter: torchscript}}\n  - quantize_dynamic: {{op_types: [LSTM, Gemm, MatMul], {LOOSE}}}\n",
}


def _project(folder: Path) -> list[Path]:
    """A project folder with the tiny models, their seeded weights and the two recipes; the recipe paths."""
    import torch

    import tiny_models

    folder.mkdir(parents=True)
    shutil.copy(TESTS / "tiny_models.py", folder / "tiny_models.py")
    for seed, (name, cls) in enumerate([("mlp", tiny_models.BagMLP), ("bf", tiny_models.BatchFirstLSTM)]):
        torch.manual_seed(seed)
        torch.save(cls().state_dict(), folder / f"{name}.pt")
    for name, text in RECIPES.items():
        (folder / f"{name}.yaml").write_text(text)
    return [folder / f"{name}.yaml" for name in RECIPES]


def _figures(run: Run) -> dict:
    """Everything a report says except speed and time: sizes, graphs, errors, agreement, accuracy, verdicts."""
    stages = {}
    for s in run.stages:
        checks = {c.row: c.check.comparison.model_dump() if c.check else c.error for c in s.checks}
        stages[s.stage] = (s.artifact.sha256, s.artifact.bytes, s.artifact.op_counts, s.passed, checks)
    return {"reference": (run.reference.sha256, run.reference.accuracy, run.reference.samples), "stages": stages}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> list[Path]:
    """One project for the sweep tests: the dynamo exporter writes source paths into the file, so runs compared
    byte for byte run in the same folder."""
    return _project(tmp_path_factory.mktemp("sweep") / "project")


@pytest.fixture(scope="module")
def separate(project) -> dict[str, dict]:
    """The figures of each recipe run on its own with `workbench run --no-bench`."""
    assert [main(["run", str(p), "--quiet", "--no-bench"]) for p in project] == [0, 0]
    return {p.stem: _figures(load(p.parent / "reports" / p.stem)) for p in project}


def test_an_in_process_sweep_writes_the_reports_separate_runs_write(project, separate):
    """--force: the sweep computes everything again, in the same folder, and writes the same figures."""
    root = project[0].parent
    out = io.StringIO()
    outcomes = sweep.sweep(project, address=None, types=(), force=True, threads=None, bench=False,
                           say=Console(file=out, width=200))
    reports = {o.job.recipe.name: Path(o.task.report) for o in outcomes}
    assert reports == {"mlp": root / "reports/mlp", "bf": root / "reports/bf"}
    assert {name: _figures(load(folder)) for name, folder in reports.items()} == separate
    assert [s.cached for f in reports.values() for s in load(f).stages] == [False] * 5, "--force computed it all"
    tasks = [sweep.TaskRecord.model_validate_json((f / "task.json").read_text()) for f in reports.values()]
    assert [(t.exit_code, t.whole_node, t.machine) for t in tasks] == [(0, False, None)] * 2
    text = out.getvalue()
    assert "compare" in text and "onnxruntime:quantize_dynamic" in text and "mlp" in text and " bf " in text


def test_without_a_cluster_only_this_machines_type_runs_and_it_says_so(project, separate):
    """The typed run has a cache of its own: it computes everything again, on this machine."""
    paths, root = project[:1], project[0].parent
    out = io.StringIO()
    outcomes = sweep.sweep(paths, address=None, types=("avx2", "avx512_vnni"), force=False, threads=None, bench=False,
                           say=Console(file=out, width=200))
    local = cpu_type()
    assert [(o.job.machine, o.task.report) for o in outcomes] == [(local, str(root / f"reports/mlp@{local}"))]
    assert main(["run", str(paths[0]), "--no-bench", "--quiet"]) == 0  # a plain run replaces reports/mlp only
    run = load(Path(outcomes[0].task.report))
    assert _figures(run) == separate["mlp"] and [s.cached for s in run.stages] == [False] * 3, "a cache of its own"
    text = out.getvalue()
    assert f"running on this machine only, type {local}" in text and "mlp: by machine type" in text
    assert ("not run: avx2" in text) == (local != "avx2")


def test_a_bad_recipe_or_type_stops_the_sweep_before_any_task(tmp_path, capsys):
    paths = _project(tmp_path / "project")
    (tmp_path / "project/bad.yaml").write_text("model: {class: tiny_models:BagMLP}\nstages: []\n")
    assert main(["sweep", str(paths[0]), str(tmp_path / "project/bad.yaml"), "--no-bench"]) == 2
    assert main(["sweep", str(paths[0]), "--machines", "avx2,avx3"]) == 2
    assert main(["sweep", str(paths[0]), str(paths[0]), "--no-bench"]) == 2
    with socket.socket() as probe:  # a port nothing listens on: Ray itself would wait minutes for it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["sweep", str(paths[0]), "--ray", f"127.0.0.1:{port}"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 4 and "bad.yaml" in errors[0] and "'avx3'" in errors[1] and "same report folder" in errors[2]
    assert errors[3] == f"error: --ray 127.0.0.1:{port}: no Ray cluster answers there (Connection refused)"
    assert not (tmp_path / "project/reports").exists(), "nothing ran"


def test_a_sweep_on_a_two_node_ray_cluster(project, separate):
    """A head of type avx512_vnni and a node of type avx2 (2 CPUs each); each recipe validated and timed on each."""
    from ray.cluster_utils import Cluster

    paths, root = project, project[0].parent
    started = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"avx512_vnni": 1}})
    try:
        cluster.add_node(num_cpus=2, resources={"avx2": 1})
        cluster.wait_for_nodes()
        up = time.perf_counter() - started
        out = io.StringIO()
        outcomes = sweep.sweep(paths, address=cluster.address, types=("avx512_vnni", "avx2"), force=True,
                               threads=None, bench=True, say=Console(file=out, width=240))
    finally:
        cluster.shutdown()
    print(f"Ray cluster up in {up:.1f} s; sweep and shutdown {time.perf_counter() - started - up:.1f} s")
    tasks = [o.task for o in outcomes]
    assert [(t.name, t.machine, t.exit_code) for t in tasks] == [
        ("mlp", "avx512_vnni", 0), ("mlp", "avx2", 0), ("bf", "avx512_vnni", 0), ("bf", "avx2", 0)
    ]
    nodes = {t.machine: {u.node for u in tasks if u.machine == t.machine} for t in tasks}
    assert all(len(n) == 1 for n in nodes.values()) and nodes["avx2"] != nodes["avx512_vnni"], nodes
    for t in tasks:
        assert t.report == str(root / f"reports/{t.name}@{t.machine}")
        run = load(Path(t.report))
        assert _figures(run) == separate[t.name], f"{t.name} on {t.machine}: figures differ from a separate run"
        assert run.bench is not None and not run.bench.cached and run.bench.timings
        assert not run.reference.cached and not any(s.cached for s in run.stages)
    for node in {t.node for t in tasks}:  # timing tasks took the whole node: one after another
        spans = sorted((t.started, t.finished) for t in tasks if t.node == node)
        assert all(t.whole_node for t in tasks) and len(spans) == 2
        assert spans[0][1] <= spans[1][0], f"two timing tasks overlapped on node {node}: {spans}"
    text = out.getvalue()
    for name in ("mlp", "bf"):
        block = text.split(f"{name}: by machine type", 1)[1]
        header = next(line for line in block.splitlines() if line.strip().startswith("row"))
        assert header.split() == ["row", "figure", "avx512_vnni", "avx2"]
        assert "max abs error" in block and "latency ms" in block and "CPU model" in block
    assert "compare on avx2" in text and "compare on avx512_vnni" in text


def test_two_processes_share_one_cache_url_and_a_damaged_entry_is_redone(tmp_path):
    """Separate projects (so separate local mirrors), one `cache: file://...` root; `workbench run` in a subprocess."""
    shared = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run_in(name: str) -> Run:
        path = _project(tmp_path / name)[0]
        text = path.read_text().replace("layer_errors: {enabled: false}\n", "") + f"cache: file://{shared}\n"
        path.write_text(text)
        done = subprocess.run([sys.executable, "-m", "workbench", "run", str(path), "--quiet", "--no-bench"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return load(path.parent / "reports" / path.stem)

    def entries() -> set[str]:
        return {p.name for p in shared.iterdir() if p.is_dir()}

    def cached(run: Run) -> list[bool]:
        return [run.reference.cached] + [x for s in run.stages for x in (s.cached, *(c.cached for c in s.checks))]

    first = run_in("first")
    made = entries()
    assert cached(first) == [False] * 7 and len(made) >= 7
    second = run_in("second")
    assert cached(second) == [True] * 7 and entries() == made, "the second process made no entry of its own"
    assert _figures(second) == _figures(first)
    (damaged,) = shared.glob("*/*/quantize_dynamic.onnx")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    third = run_in("third")
    assert [s.cached for s in third.stages] == [True, True, False], "the damaged stage entry is redone"
    assert _figures(third) == _figures(first)
    (redone,) = shared.glob("*/*/quantize_dynamic.onnx")
    assert redone.read_bytes() != bytes(data) and entries() == made
