"""The graded task.py, exercised the way a grader would: alone in a folder, its own weights, any cwd."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import checkpoints
import task
from reliability import record

LENGTHS = (1, 5, 256, 4096)
# The product's fp32 rule (README "Exactness", workbench/validate.py): |onnx - torch| <= 1e-5 + 1e-5 * |torch| each.
ATOL, RTOL = 1e-5, 1e-5


def assert_fp32_close(got, expected, what: str = "") -> None:
    """``got`` matches the torch reference ``expected`` by the product's fp32 rule, element by element."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    diff = np.abs(got - expected)
    outside = ~(diff <= ATOL + RTOL * np.abs(expected))  # NaN is never within
    assert not outside.any(), (
        f"{what}: {int(outside.sum())} of {outside.size} outputs differ from torch by more than "
        f"{ATOL:g} + {RTOL:g} x |torch|; |diff| up to {np.max(diff):.3g}"
    )


def _token_lists(vocab: int = 1000) -> list[list[int]]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, vocab, size=n).tolist() for n in LENGTHS]


def _torch_logits(weights: Path, ids: list[int]) -> np.ndarray:
    model = task.TextClassifier()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    with torch.no_grad():
        return model(torch.tensor(ids, dtype=torch.long).reshape(-1, 1)).numpy()


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, fresh_weights) -> str:
    return task.convert(fresh_weights, tmp_path_factory.mktemp("onnx") / "text_classifier.onnx")


def test_grader_scenario_lone_copy_other_cwd(lone_task, fresh_weights, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cases = _token_lists()
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import task; path = task.convert(); "
        "print(json.dumps({'path': path, 'results': [task.inference(path, ids) for ids in json.loads(sys.argv[2])]}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(lone_task), json.dumps(cases)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["path"] == str(lone_task / "text_classifier.onnx")
    assert (lone_task / "text_classifier.onnx").is_file()
    assert not list(elsewhere.iterdir()), "nothing may be written in the working directory"
    for ids, result in zip(cases, out["results"]):
        assert isinstance(result, list) and len(result) == 1 and len(result[0]) == 2
        assert all(type(v) is float for v in result[0])
        expected = _torch_logits(fresh_weights, ids)
        assert_fp32_close(result, expected, f"length {len(ids)}")


def test_original_example_runs_with_committed_weights(tmp_path):
    path = task.convert(task.WEIGHTS_PATH, tmp_path / "t.onnx")
    result = task.inference(path, [1] * 256)
    model = task.build_model(task.load_state_dict(task.WEIGHTS_PATH))
    with torch.no_grad():
        expected = model(torch.ones([256, 1], dtype=torch.long)).numpy()
    assert_fp32_close(result, expected)


def test_onnx_file_is_checked_dynamic_lstm_with_provenance(onnx_file, fresh_weights):
    proto = onnx.load(onnx_file)
    onnx.checker.check_model(proto, full_check=True)
    assert "LSTM" in {n.op_type for n in proto.graph.node}
    assert "Loop" not in {n.op_type for n in proto.graph.node}
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["sequence", "batch"]
    meta = {p.key: p.value for p in proto.metadata_props}
    import hashlib

    assert meta["weights_sha256"] == hashlib.sha256(fresh_weights.read_bytes()).hexdigest()
    assert meta["vocab_size"] == "1000"
    assert meta["onnx_opset"] == str(task.OPSET)
    assert meta["torch_version"] == torch.__version__


def test_batch_axis_is_dynamic(onnx_file, fresh_weights):
    import onnxruntime as ort

    ids = np.random.default_rng(3).integers(0, 1000, size=(40, 5))
    got = ort.InferenceSession(onnx_file).run(None, {"text": ids})[0]
    model = task.build_model(task.load_state_dict(fresh_weights))
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).numpy()
    assert got.shape == (5, 2)
    assert_fp32_close(got, expected)


def test_session_is_cached_and_rebuilt_when_file_changes(tmp_path, fresh_weights):
    path = task.convert(fresh_weights, tmp_path / "m.onnx")
    task.inference(path, [1, 2, 3])
    first = task._sessions[os.path.abspath(path)][1]
    task.inference(path, [4, 5])
    assert task._sessions[os.path.abspath(path)][1] is first
    torch.manual_seed(99)
    other = tmp_path / "other.pt"
    torch.save(task.TextClassifier().state_dict(), other)
    task.convert(other, path)
    result = task.inference(path, [4, 5])
    assert task._sessions[os.path.abspath(path)][1] is not first
    assert_fp32_close(result, _torch_logits(other, [4, 5]))


def test_other_sizes_are_read_off_the_weights(tmp_path):
    torch.manual_seed(1)
    small = task.TextClassifier(vocab_size=50, embed_dim=8, hidden_dim=16, num_classes=3)
    torch.save(small.state_dict(), tmp_path / "small.pt")
    path = task.convert(tmp_path / "small.pt", tmp_path / "small.onnx")
    with torch.no_grad():
        expected = small.eval()(torch.tensor([[3], [49], [0]])).numpy()
    assert_fp32_close(task.inference(path, [3, 49, 0]), expected)
    with pytest.raises(ValueError, match=r"input\[0\] = 50 is out of range.*\[0, 49\]"):
        task.inference(path, [50])


# Each bad input: (value, error type, a pattern the message must match). Shared with the README's count.
BAD_INPUTS = [
    ([1008], ValueError, r"input\[0\] = 1008 is out of range: token ids are integers in \[0, 999\]"),
    ([101, 304, 993, 1008, 102], ValueError, r"input\[3\] = 1008 is out of range"),
    ([1000], ValueError, r"input\[0\] = 1000 is out of range"),
    ([-1], ValueError, r"input\[0\] = -1 is out of range"),
    ([5, -100], ValueError, r"input\[1\] = -100 is out of range"),
    ([2**63], ValueError, r"input\[0\] = 9223372036854775808 is out of range"),
    ([], ValueError, r"input is empty"),
    ([True, 5], TypeError, r"input\[0\] = True \(bool\) is not an integer token id"),
    ([5, False], TypeError, r"input\[1\] = False \(bool\)"),
    ([np.True_], TypeError, r"input\[0\] = .*True.* is not an integer token id"),
    ([1.0], TypeError, r"input\[0\] = 1.0 \(float\) is not an integer"),
    ([3, 2.5], TypeError, r"input\[1\] = 2.5 \(float\)"),
    ([float("nan")], TypeError, r"input\[0\] = nan \(float\)"),
    ([float("inf")], TypeError, r"input\[0\] = inf \(float\)"),
    ([np.float32(2)], TypeError, r"input\[0\] = .*2.0.* \(float32\)"),
    (["5"], TypeError, r"input\[0\] = '5' \(str\)"),
    ([None], TypeError, r"input\[0\] = None \(NoneType\)"),
    ([[1, 2]], TypeError, r"input\[0\] = \[1, 2\] \(list\)"),
    ([1, [2]], TypeError, r"input\[1\] = \[2\] \(list\)"),
    ([(1,)], TypeError, r"input\[0\] = \(1,\) \(tuple\)"),
    ([{"id": 1}], TypeError, r"input\[0\] = \{'id': 1\} \(dict\)"),
    ([1 + 2j], TypeError, r"input\[0\] = \(1\+2j\) \(complex\)"),
    ([b"1"], TypeError, r"input\[0\] = b'1' \(bytes\)"),
    ("101 304", TypeError, r"input must be a list of integer token ids, got str"),
    (b"\x01\x02", TypeError, r"got bytes"),
    (None, TypeError, r"got NoneType"),
    (42, TypeError, r"got int"),
    ({1, 2}, TypeError, r"got set"),
    ({"tokens": [1]}, TypeError, r"got dict"),
    (np.array([1.0, 2.0]), TypeError, r"dtype float64"),
    (np.array([True, False]), TypeError, r"dtype bool"),
    (np.array([[1, 2], [3, 4]]), TypeError, r"1-D array.*shape \(2, 2\)"),
    (np.array(["1"]), TypeError, r"dtype <U1"),
    (np.array([1, 2000]), ValueError, r"input\[1\] = 2000 is out of range"),
    ([0] * (task.MAX_TOKENS + 1), ValueError, rf"input has {task.MAX_TOKENS + 1} token ids; at most {task.MAX_TOKENS}"),
    ([0] * 100_000, ValueError, r"input has 100000 token ids; at most 65536 are accepted"),
]


@pytest.mark.parametrize("value, error, message", BAD_INPUTS, ids=[f"bad{i}" for i in range(len(BAD_INPUTS))])
def test_bad_input_is_named(onnx_file, value, error, message):
    with pytest.raises(error, match=message):
        task.inference(onnx_file, value)
    record("bad inputs tried")


def test_good_inputs_of_other_integer_kinds(onnx_file, fresh_weights):
    expected = _torch_logits(fresh_weights, [0, 999, 5])
    for value in (
        [0, 999, 5],
        (0, 999, 5),
        np.array([0, 999, 5]),
        np.array([0, 999, 5], dtype=np.int32),
        [np.int64(0), np.uint16(999), 5],
    ):
        assert_fp32_close(task.inference(onnx_file, value), expected, repr(value))


def test_longest_accepted_input_runs(onnx_file):
    result = task.inference(onnx_file, [7] * task.MAX_TOKENS)
    assert len(result) == 1 and all(np.isfinite(result[0]))


def test_missing_onnx_file_is_named(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        task.inference(str(missing), [1, 2])


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="onnxruntime cannot load this file"):
        task.inference(str(bad), [1])


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        task.convert(tmp_path / "absent.pt", tmp_path / "x.onnx")


def test_wrong_architecture_lists_missing_and_unexpected_keys(tmp_path):
    state = task.TextClassifier().state_dict()
    state["extra.weight"] = state.pop("fc.weight")
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match=r"missing keys \['fc.weight'\], unexpected keys \['extra.weight'\]"):
        task.convert(tmp_path / "wrong.pt", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(
    "name, tensor",
    [("rnn.bias_hh_l0", torch.zeros(7)), ("embedding.weight", torch.zeros(5)), ("fc.weight", torch.zeros(2, 3, 4))],
)
def test_wrong_shapes_are_refused(tmp_path, name, tensor):
    state = task.TextClassifier().state_dict()
    state[name] = tensor
    torch.save(state, tmp_path / "shapes.pt")
    with pytest.raises(ValueError, match=r"shapes.pt: tensor shapes do not fit a TextClassifier"):
        task.convert(tmp_path / "shapes.pt", tmp_path / "x.onnx")


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"embedding.weight": _Exploit(str(marker))}, evil)
    with pytest.raises(ValueError, match="refused to load: only plain tensors are allowed"):
        task.convert(evil, tmp_path / "x.onnx")
    assert not marker.exists()


def test_full_pickled_module_is_refused(tmp_path):
    # pickle refers to the class as task.TextClassifier, so it must be the class `import task` gives now: a
    # workbench run in this process may have imported a recipe root's own task.py in place of this one
    torch.save(importlib.import_module("task").TextClassifier(), tmp_path / "module.pt")
    with pytest.raises(ValueError, match="refused to load"):
        task.convert(tmp_path / "module.pt", tmp_path / "x.onnx")


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04truncated"])
def test_truncated_or_foreign_weights(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bad.pt"):
        task.convert(path, tmp_path / "x.onnx")


@pytest.mark.parametrize("case", list(checkpoints.ZIP_CASES))
def test_zip_that_is_not_a_readable_checkpoint(tmp_path, case):
    path = checkpoints.ZIP_CASES[case](checkpoints.small_checkpoint(tmp_path / "source.pt"), tmp_path / "bad.pt")
    assert zipfile.is_zipfile(path)  # past the zip-signature check: torch.load's own error is what stops it
    with pytest.raises(RuntimeError):
        torch.load(path, weights_only=True)
    with pytest.raises(
        ValueError, match=r"bad.pt: not a readable torch.save file \(truncated or not a checkpoint\)"
    ) as info:
        task.convert(path, tmp_path / "x.onnx")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.onnx").exists()


NOT_TENSORS = {"int_value": "'embedding.weight' holds int", "list_among_tensors": "'embedding.weight' holds list"}


@pytest.mark.parametrize("case", list(checkpoints.NON_TENSORS))
def test_values_that_are_not_tensors(tmp_path, case):
    """The refusal names the first key whose value is not a tensor, and what it holds."""
    path = checkpoints.non_tensor_values(tmp_path / "bad.pt", case)
    assert torch.load(path, weights_only=True)  # loads without complaint: the tensor check is what stops it
    with pytest.raises(TypeError) as info:
        task.convert(path, tmp_path / "x.onnx")
    assert str(info.value) == f"{path}: expected a state_dict (a mapping of names to tensors); {NOT_TENSORS[case]}"
    assert not (tmp_path / "x.onnx").exists()


def test_a_saved_list_of_tensors_is_no_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(TypeError) as info:
        task.load_state_dict(tmp_path / "list.pt")
    assert str(info.value) == f"{tmp_path / 'list.pt'}: expected a state_dict (a mapping of names to tensors), got list"


def test_demo_runs_as_a_script(lone_task, tmp_path):
    done = subprocess.run(
        [sys.executable, str(lone_task / "task.py")], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result) == 1 and len(result[0]) == 2


def test_parity_guard_refuses_an_export_of_other_weights(onnx_file):
    torch.manual_seed(5)
    other = task.TextClassifier().eval()
    with pytest.raises(
        RuntimeError, match=r"ONNX export differs from PyTorch by .* \(limit 0.0001 \+ 0.0001 x \|torch\|\)"
    ):
        task._check_parity(other, Path(onnx_file).read_bytes())


@pytest.mark.parametrize("name, value", [("rnn.bias_ih_l0", float("nan")), ("embedding.weight", float("inf"))])
def test_convert_refuses_an_export_that_hides_a_broken_model(tmp_path, name, value):
    """Weights of a diverged training run (NaN or inf): PyTorch's outputs are NaN, while onnxruntime's LSTM
    clamps its gate inputs and turns the same weights into ordinary-looking logits. A real export that does
    not match PyTorch: convert() must refuse it, write nothing, and leave a previous file alone."""
    torch.manual_seed(0)
    state = task.TextClassifier(vocab_size=50, embed_dim=8, hidden_dim=16).state_dict()
    state[name] = torch.full_like(state[name], value)
    torch.save(state, tmp_path / "diverged.pt")
    refusal = r"^ONNX export differs from PyTorch by nan \(limit 0.0001 \+ 0.0001 x \|torch\|\)$"
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"the previous file")
    with pytest.raises(RuntimeError, match=refusal):
        task.convert(tmp_path / "diverged.pt", folder / "model.onnx")
    assert [p.name for p in folder.iterdir()] == ["model.onnx"]  # no temporary file left either
    assert (folder / "model.onnx").read_bytes() == b"the previous file"
    with pytest.raises(RuntimeError, match=refusal):
        task.convert(tmp_path / "diverged.pt", tmp_path / "new" / "model.onnx")
    assert not (tmp_path / "new").exists()
