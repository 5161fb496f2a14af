"""Hostile inputs and hostile conditions: untrusted files, malformed recipes, concurrent runs, full disks."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import onnx
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import task
from workbench import recipe
from workbench.cli import main
from workbench.errors import RecipeError

import checkpoints
from reliability import FUZZ_EXAMPLES, record

ROOT = Path(__file__).resolve().parent.parent
GOOD = {
    "model": {
        "class": "task:TextClassifier",
        "weights": "model.pt",
        "inputs": [{"name": "text", "feed": "ids", "dtype": "int64", "axes": ["sequence", "batch"]}],
        "vocab_size": 1000,
        "example_length": 16,
    },
    "data": {"synthetic": {"size": 10, "seed": 1}, "batch_size": 8},
    "bench": {"budget_seconds": 1.0, "latency_lengths": [32, 256]},
    "stages": [
        {"export": {"opset": 17}},
        {"simplify": {}},
        {"quantize_dynamic": {"weight_type": "qint8", "op_types": ["LSTM", "Gemm"], "accept": {"min_agreement": 0.99}}},
    ],
}
WRONG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=4).map(repr),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.just("!!python/object/apply:os.system ['touch PWNED']"),
)


def _paths(node, prefix=""):
    """Every key path of the document, as the loader spells them: a.b[2].c"""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{prefix}.{key}" if prefix else key
            yield here, node, key
            yield from _paths(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            here = f"{prefix}[{index}]"
            yield here, node, index
            yield from _paths(value, here)


def _expect_clean(text: str, tmp: Path, must_name: str | None = None) -> None:
    """Loading ``text`` gives a Recipe or a RecipeError naming the file (and ``must_name`` or an ancestor)."""
    path = tmp / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        recipe.load(path)
    except RecipeError as exc:
        message = str(exc)
        assert message.startswith(str(path)), message
        if must_name is not None:
            assert any(f"{ancestor}:" in message or f"{ancestor}." in message for ancestor in _ancestors(must_name)), (
                must_name,
                message,
            )
    assert not (tmp / "PWNED").exists() and not Path("PWNED").exists()


def _ancestors(path: str) -> list[str]:
    """``stages[2].quantize_dynamic.weight_type`` -> itself, then each key path above it, up to ``stages``."""
    import re

    parts = re.findall(r"[^.\[]+|\[\d+\]", path)
    out = []
    for end in range(len(parts), 0, -1):
        out.append("".join(p if p.startswith("[") or i == 0 else "." + p for i, p in enumerate(parts[:end])))
    return out


@settings(
    max_examples=FUZZ_EXAMPLES // 2,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_one_wrong_value_or_key_is_named_by_its_path(tmp_path, data):
    record("fuzz cases run")
    document = json.loads(json.dumps(GOOD))
    where, parent, key = data.draw(st.sampled_from(list(_paths(document))))
    if data.draw(st.booleans()):
        parent[key] = data.draw(WRONG_VALUES)
        named = where
    elif isinstance(parent, dict):
        parent[key + "_x"] = 1
        named = f"{where}_x"
    else:
        parent.append(data.draw(WRONG_VALUES))
        named = None  # a new list entry may be valid
    try:
        text = yaml.safe_dump(document)
    except yaml.YAMLError:
        return
    # the message names the changed key or the nearest key above it where the problem shows
    # (a wrong stage name is named as stages[i], a null that makes data empty as data)
    _expect_clean(text, tmp_path, must_name=named)


@settings(
    max_examples=FUZZ_EXAMPLES // 2,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.recursive(
            st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5)),
            lambda inner: st.one_of(
                st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
            ),
            max_leaves=30,
        ).map(lambda doc: yaml.safe_dump(doc)),
        st.sampled_from(
            [
                "!!python/object/apply:os.system ['touch PWNED']",
                "!!python/name:os.system",
                "{a: !!binary x}",
                "a: &a [1]\nb: *a\n",
                "? [a]\n: b",
                "[" * 200,
                "- - - - - - - - - - - - - - - - - x",
            ]
        ),
    )
)
def test_fuzz_arbitrary_text_raises_only_recipe_errors(tmp_path, text):
    record("fuzz cases run")
    _expect_clean(text, tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
            "expands to more than 100,000 values",
        ),
        ("[" * 100 + "]" * 100, "nested deeper than 64 levels"),
        ("[" * 20000 + "]" * 20000, "nested"),
        (
            "model: {class: a:B, weights: w}\nstages: [{export: {opset: 100000000000000000000000}}]",
            r"stages[0].export.opset",
        ),
        (
            "model: {class: a:B, weights: w}\nbench: {budget_seconds: 1e999}\nstages: [{export: }]",
            "bench.budget_seconds",
        ),
        ("model: !!python/object/apply:os.system ['touch PWNED']\n", "could not determine a constructor"),
    ],
)
def test_hostile_yaml(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        recipe.load(path)
    assert message in str(info.value)
    assert not (tmp_path / "PWNED").exists()


def test_huge_recipe_file_is_not_read(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (recipe.MAX_RECIPE_BYTES + 10))
    with pytest.raises(RecipeError, match="at most 1048576 are read"):
        recipe.load(path)


# --- untrusted weights and ONNX files, through the command line: one line, exit 2, nothing run ---------


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _weights_case(folder: Path, case: str) -> tuple[Path, str]:
    """The weights file for ``case`` (only that one is written) and what its one error line must say."""
    path = folder / f"{case}.pt"
    unreadable = "not a readable torch.save file"
    if case == "evil":
        torch.save({"embedding.weight": _Exploit(str(folder / "PWNED"))}, path)
    elif case == "module":
        torch.save(importlib.import_module("task").TextClassifier(), path)  # see test_task: pickled by reference
    elif case == "shapes":
        torch.save({**task.TextClassifier().state_dict(), "fc.weight": torch.zeros(3, 512)}, path)
    elif case == "notzip":
        path.write_bytes(b"definitely not a checkpoint")
    elif case == "truncated":
        data = (ROOT / "model.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case in checkpoints.ZIP_CASES:
        checkpoints.ZIP_CASES[case](checkpoints.small_checkpoint(folder / "source.pt"), path)
    elif case in checkpoints.NON_TENSORS:
        checkpoints.non_tensor_values(path, case)
    return path, {
        "evil": "refused: the file holds objects other than tensors",
        "module": "refused: the file holds objects other than tensors",
        "shapes": "tensor shapes do not fit TextClassifier: size mismatch for fc.weight",
        "notzip": unreadable,
        "truncated": unreadable,
        "foreign_zip": unreadable,
        "cut_inside": unreadable,
        "short_record": unreadable,
        "int_value": "expected a state_dict (names -> tensors)",
        "list_among_tensors": "expected a state_dict (names -> tensors)",
        "missing": "weights file not found",
    }[case]


WEIGHTS_CASES = ["evil", "module", "shapes", "notzip", "truncated", *checkpoints.ZIP_CASES, *checkpoints.NON_TENSORS]


@pytest.mark.parametrize("case", [*WEIGHTS_CASES, "missing"])
def test_untrusted_weights_get_one_line(project, capsys, case):
    weights, message = _weights_case(project, case)
    if case in checkpoints.ZIP_CASES:
        # past the zip-signature check, so what stops it is torch.load's own error
        assert zipfile.is_zipfile(weights)
        with pytest.raises(RuntimeError):
            torch.load(weights, weights_only=True)
    path = project / "r.yaml"
    path.write_text(
        f"model: {{class: task:TextClassifier, weights: {weights.name}}}\n"
        "data: {synthetic: {size: 8}}\nstages: [{export: {}}]\n"
    )
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and weights.name in err and message in err, err
    assert not (project / "PWNED").exists()
    assert not (project / "reports" / "r").exists()


def _onnx_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    src = Path(task.convert(ROOT / "model.pt", folder / "good.onnx"))
    data = src.read_bytes()
    (folder / "truncated.onnx").write_bytes(data[: len(data) // 3])
    (folder / "text.onnx").write_text("hello, I am not a model")
    proto = onnx.load(str(src))
    proto.graph.input[0].name = "tokens"
    for node in proto.graph.node:
        node.input[:] = ["tokens" if name == "text" else name for name in node.input]
    onnx.save(proto, folder / "renamed.onnx")
    proto = onnx.load(str(src))
    proto.opset_import[0].version = 99
    onnx.save(proto, folder / "opset99.onnx")
    return {
        "truncated": (folder / "truncated.onnx", "onnxruntime cannot load this model"),
        "text": (folder / "text.onnx", "onnxruntime cannot load this model"),
        "renamed": (folder / "renamed.onnx", "inputs ['tokens'] do not match the recipe's declared inputs ['text']"),
        "opset99": (folder / "opset99.onnx", "onnxruntime cannot load this model"),
    }


@pytest.mark.parametrize("case", ["truncated", "text", "renamed", "opset99"])
def test_untrusted_onnx_files_get_one_line(project, capsys, case):
    path, message = _onnx_cases(project)[case]
    recipe_path = project / "r.yaml"
    recipe_path.write_text("model: {class: task:TextClassifier, weights: model.pt}\nstages: [{export: {}}]\n")
    assert main(["bench", str(path), "--recipe", str(recipe_path), "--budget", "0.05"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and path.name in err and message in err, err
    if case != "renamed":
        with pytest.raises(ValueError, match="onnxruntime cannot load this file"):
            task.inference(str(path), [1, 2, 3])


# --- concurrent runs, full and read-only disks ------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_concurrent_runs_serialize_and_leave_one_complete_report(project):
    path = project / "c.yaml"
    path.write_text(
        "model: {class: task:TextClassifier, weights: model.pt}\n"
        "data: {synthetic: {size: 300, seed: 3, max_len: 64}}\nstages: [{export: {}}, {simplify: {}}]\n"
    )
    cmd = [sys.executable, "-m", "workbench", "run", str(path), "--quiet", "--no-bench", "--force"]
    procs = [
        subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("waiting for another run" in err for _, err in outs) == 1
    report = project / "reports" / "c"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["verdict"] == "passed" and [s["stage"] for s in metrics["stages"]] == ["export", "simplify"]
    for stage in metrics["stages"]:
        data = (report / stage["artifact"]["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == stage["artifact"]["sha256"]
    assert sorted(p.name for p in report.parent.iterdir()) == [".c.lock", "c"]


def _in_mount(project: Path, script: str, size: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a private mount namespace where project/mnt is a tmpfs of ``size``."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    # An unprivileged container refuses a new mount namespace: that is this machine, not a failure of the product.
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(
            f"no private mount namespace here: {probe.stderr.strip() or f'unshare -m exited {probe.returncode}'}"
        )
    (project / "mnt").mkdir(exist_ok=True)
    shell = f"set -u; mount -t tmpfs -o size={size} tmpfs {project}/mnt || exit 77\n{script}"
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", shell], env=_env(), capture_output=True, text=True, timeout=600, cwd=project
    )
    if done.returncode == 77:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return done


def test_full_disk_keeps_the_previous_report(project):
    path = project / "full.yaml"
    path.write_text(
        "reports: mnt/reports\nmodel: {class: task:TextClassifier, weights: model.pt}\n"
        "data: {synthetic: {size: 20, seed: 3, max_len: 32}}\nstages: [{export: {}}]\n"
    )
    run = f"{sys.executable} -m workbench run {path} --quiet --no-bench"
    done = _in_mount(
        project,
        f"{run} > /dev/null || exit 3\n"
        f"cp mnt/reports/full/metrics.json before.json\n"
        f"{run} --force 2> err.txt; echo $? > code.txt\n"
        f"cmp mnt/reports/full/metrics.json before.json && ls -A mnt/reports > left.txt",
        size="9m",
    )
    assert done.returncode == 0, done.stderr
    err = (project / "err.txt").read_text()
    assert (project / "code.txt").read_text().strip() == "2"
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err, err
    assert (project / "left.txt").read_text().split() == [".full.lock", "full"]


def test_read_only_reports_folder(project):
    path = project / "ro.yaml"
    path.write_text(
        "reports: mnt/reports\nmodel: {class: task:TextClassifier, weights: model.pt}\n"
        "data: {synthetic: {size: 20, seed: 3, max_len: 32}}\nstages: [{export: {}}]\n"
    )
    done = _in_mount(
        project,
        f"mkdir mnt/reports && mount -o remount,ro {project}/mnt && "
        f"{sys.executable} -m workbench run {path} --quiet --no-bench",
        size="1m",
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "not writable" in done.stderr and "Traceback" not in done.stderr
