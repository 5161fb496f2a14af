"""Hostile inputs and hostile conditions: untrusted files, malformed recipes, concurrent runs, full disks."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import struct
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
# The model section, kept in this one place: nothing below depends on its shape.
MODEL = {
    "class": "task:TextClassifier",
    "weights": "model.pt",
    "inputs": [{"name": "text", "feed": "ids", "dtype": "int64", "axes": ["sequence", "batch"]}],
    "vocab_size": 1000,
    "example_length": 16,
}
# A valid recipe. The fuzz rules below rely on two things about it: each value is written in its key's own type
# (1.0 for a float), and every mapping is a section with a fixed set of keys (nothing free-form like model.kwargs).
GOOD = {
    "model": MODEL,
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
)
# Tags written into the recipe's text at the mutated value (yaml.safe_dump would quote them into plain strings).
# Every tag written in a recipe is refused where it is written, before any value is built. These have no
# constructor in a safe loader anyway:
UNKNOWN_TAGS = (
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!custom {{a: 1}}",
    "!<tag:example.com,2024:app> x",
)
# Standard YAML tags a safe loader would build, into values no recipe key takes (bytes, a date, an unordered set,
# ordered pairs) or into the very value the key would get without the tag.
FOREIGN_TYPE_TAGS = (
    "!!binary aGVsbG8=",
    "!!timestamp 2001-12-14",
    "!!set {{sequence, batch}}",
    "!!omap [{{a: 1}}]",
    "!!pairs [{{a: 1}}]",
    "!!str x",
    "!!int 1",
    "!!seq [1]",
)
SLOT = "TAGSLOT"  # a plain scalar that yaml.safe_dump writes unquoted, replaced by a tag in the text


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


def _load(text: str, tmp: Path) -> str | None:
    """Load ``text`` as a recipe file: None if accepted, else the RecipeError's message after ``file: ``.

    Any other exception propagates and fails the test; no tag may ever have run.
    """
    path = tmp / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        recipe.load(path)
        return None
    except RecipeError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: "), message
        return message[len(f"{path}: ") :]
    finally:
        assert not (tmp / "PWNED").exists() and not Path("PWNED").exists()


def _complaints(message: str) -> list[str]:
    return message.split("; ")


def _names(message: str, where: str, *, within: bool = False) -> bool:
    """Some complaint in ``message`` is about key path ``where`` itself (or, ``within``, a key path inside it:
    a mapping or list put there has keys and items of its own)."""
    follows = (":", ".", "[") if within else (":",)
    return any(complaint.startswith(where + mark) for complaint in _complaints(message) for mark in follows)


def _section_rule(message: str, where: str) -> bool:
    """A section above ``where`` is named for a rule on its keys together (a model validator: ``Value error``),
    e.g. ``data`` when ``data.synthetic`` becomes null, or the section holding axes that name one axis twice.
    Only such a complaint may name a key above the one that was changed."""
    return any(
        complaint.startswith(f"{above}: ") and " is not allowed: Value error, " in complaint
        for complaint in _complaints(message)
        for above in _ancestors(where)[1:]
    )


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__  # bool and int are different kinds


def _must_refuse(old: object, new: object) -> bool:
    """Whether putting ``new`` where GOOD has ``old`` must be refused. Only where that is certain: every key is
    strict, so a value of another YAML type is wrong, except null (optional keys and stage parameters take it,
    as "not set" and "no parameters") and an integer where a float is due (a float key takes 1 for 1.0).
    A value of the same type may be valid (True -> False, 17 -> 18, {} for a section of defaults)."""
    if new is None or old is None or _kind(new) == _kind(old):
        return False
    return not (_kind(old) == "float" and _kind(new) == "int")


def _ancestors(path: str) -> list[str]:
    """``stages[2].quantize_dynamic.weight_type`` -> itself, then each key path above it, up to ``stages``."""
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
    """One change to GOOD: a wrong value, an extra key or list item, or a YAML tag written at a value.

    What must be refused is refused, and a refusal names the exact key path that was changed; the only
    exceptions are named where the loader cannot do better (a rule on a section's keys together; a stage
    entry, which is one stage name and its parameters). A tag, any tag, is refused as the YAML is read,
    naming its line and the tag as written.
    """
    document = json.loads(json.dumps(GOOD))
    where, parent, key = data.draw(st.sampled_from(list(_paths(document))), label="where")
    old = parent[key]
    change = data.draw(st.sampled_from(["value", "extra", "tag"]), label="change")
    if change == "value":
        new = parent[key] = data.draw(WRONG_VALUES, label="new value")
        message = _load(yaml.safe_dump(document), tmp_path)
        if message is None:
            assert not _must_refuse(old, new), f"{where}: {old!r} -> {new!r} was accepted"
        else:
            within = isinstance(new, (dict, list))
            assert _names(message, where, within=within) or _section_rule(message, where), (where, new, message)
    elif change == "extra" and isinstance(parent, dict):
        parent[f"{key}_x"] = 1
        message = _load(yaml.safe_dump(document), tmp_path)
        assert message is not None, f"unknown key {where}_x was accepted"
        if any(parent is entry for entry in document["stages"]):
            entry = where.rsplit(".", 1)[0]  # stages[i]: a second key makes it no stage at all
            assert _names(message, entry) and "a stage is a mapping of one stage name" in message, (where, message)
        else:
            assert any(c.startswith(f"{where}_x: unknown key") for c in _complaints(message)), (where, message)
    elif change == "extra":
        parent.append(data.draw(WRONG_VALUES, label="new item"))
        items = where[: where.rindex("[")]
        message = _load(yaml.safe_dump(document), tmp_path)  # one more item may be valid (a latency length)
        if message is not None:
            assert _names(message, items, within=True) or _section_rule(message, f"{items}[0]"), (where, message)
    else:
        tag = data.draw(st.sampled_from(UNKNOWN_TAGS + FOREIGN_TYPE_TAGS), label="tag")
        parent[key] = SLOT
        text = yaml.safe_dump(document)
        assert text.count(SLOT) == 1, text
        message = _load(text.replace(SLOT, tag.format(marker=tmp_path / "PWNED")), tmp_path)
        line = text[: text.index(SLOT)].count("\n") + 1
        refusal = f"tags are not allowed in a recipe: {tag.split()[0]}"
        assert message is not None and message.startswith(f"not valid YAML (line {line}, "), (where, tag, message)
        assert message.endswith(refusal), (where, tag, message)
    record("fuzz cases run")


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
    _load(text, tmp_path)
    record("fuzz cases run")


def test_every_key_refuses_a_value_of_another_type(tmp_path):
    """The fuzz test's rule, applied to every key path of GOOD with one value of each YAML type: where a value
    must be refused (_must_refuse), it is, and the refusal names that key path."""
    wrong = []
    for where, _, _ in _paths(GOOD):
        for new in (True, 7, 2.5, "7", [7], {"a": 7}):
            document = json.loads(json.dumps(GOOD))
            _, parent, key = next(found for found in _paths(document) if found[0] == where)
            old, parent[key] = parent[key], new
            if not _must_refuse(old, new):
                continue
            message = _load(yaml.safe_dump(document), tmp_path)
            if message is None or not _names(message, where, within=isinstance(new, (dict, list))):
                wrong.append(f"{where}: {old!r} -> {new!r}: {message or 'accepted'}")
    assert not wrong, "\n".join(wrong)


def _recipe_with(tmp_path: Path, bench: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"model: {{class: task:TextClassifier, weights: model.pt}}\nbench: {bench}\nstages: [{{export: {{}}}}]\n"
    )
    return path


@pytest.mark.parametrize(
    "bench, tag",
    [
        ("{latency_lengths: !!set {32, 256}}", "!!set"),  # a list key (a lax tuple) would take it, in hash order
        ("{latency_lengths: !!omap [{32: 1}]}", "!!omap"),
        ("{latency_lengths: !!pairs [{32: 1}]}", "!!pairs"),
        ("{budget_seconds: !!timestamp 2001-12-14}", "!!timestamp"),
        ("{budget_seconds: !!binary aGVsbG8=}", "!!binary"),
        ("{budget_seconds: !!float 1}", "!!float"),
        ("{enabled: !!bool true}", "!!bool"),
        ("{budget_seconds: ! 1}", "!"),
    ],
)
def test_a_yaml_tag_is_refused_where_it_is_written(tmp_path, bench, tag):
    """Any tag, standard ones too: `axes: !!set {sequence, batch}` would give either layout, by PYTHONHASHSEED."""
    path = _recipe_with(tmp_path, bench)
    column = bench.index("!") + len("bench: ") + 1
    with pytest.raises(RecipeError) as info:
        recipe.load(path)
    assert (
        str(info.value) == f"{path}: not valid YAML (line 2, column {column}): tags are not allowed in a recipe: {tag}"
    )


def test_yaml_without_tags_still_resolves_plain_values(tmp_path):
    """Refusing tags leaves the implicit resolution of untagged values alone: 1e-5 is a float (without a dot),
    true a bool, 256 an int, and a quoted "!!set" only text."""
    loaded = recipe.load(
        _recipe_with(tmp_path, "{budget_seconds: 1e-5, enabled: true, latency_lengths: [32, 256]}\nreports: '!!set'")
    )
    assert loaded.settings.reports == "!!set"
    assert loaded.settings.bench.budget_seconds == 1e-5 and loaded.settings.bench.enabled is True
    assert loaded.settings.bench.latency_lengths == (32, 256)


@pytest.mark.parametrize("key", ["int", "float", "str", "bool", "none", "tuple", "list", "dict", "union", "Throughput"])
def test_an_unknown_key_spelled_like_a_type_is_named(tmp_path, key):
    """pydantic's error locations also name union members by type (``int``, ``list[int]``, a class name): only
    those are left out of a key path, never a key of the recipe, in a section or under a stage."""
    path = _recipe_with(tmp_path, f"{{{key}: 1, throughput: {{{key}: 1}}}}")
    text = path.read_text().replace("[{export: {}}]", f"[{{export: {{{key}: 1, accept: {{{key}: 1}}}}}}]")
    path.write_text(text)
    with pytest.raises(RecipeError) as info:
        recipe.load(path)
    assert str(info.value) == (
        f"{path}: bench.throughput.{key}: unknown key; allowed keys: batch, length; bench.{key}: unknown key; "
        "allowed keys: enabled, budget_seconds, latency_lengths, throughput, chart_lengths, tune, cache_when_busy"
    )
    path.write_text(text.replace(f"bench: {{{key}: 1, throughput: {{{key}: 1}}}}", "bench: {}"))
    with pytest.raises(RecipeError, match=rf"stages\[0\]\.export\.{key}: unknown key; allowed keys: opset"):
        recipe.load(path)
    path.write_text(path.read_text().replace(f"{{{key}: 1, accept:", "{accept:"))
    with pytest.raises(RecipeError, match=rf"stages\[0\]\.export\.accept\.{key}: unknown key; allowed keys: max_abs"):
        recipe.load(path)


@pytest.mark.parametrize("key", ["int", "str", "list", "bool"])
def test_a_model_kwarg_spelled_like_a_type_is_named(tmp_path, key):
    """model.kwargs is a mapping of any names to int | float | str | bool: each complaint names the kwarg."""
    path = tmp_path / "r.yaml"
    model = f"{{class: task:TextClassifier, weights: model.pt, kwargs: {{{key}: [1]}}}}"
    path.write_text(f"model: {model}\nstages: [{{export: {{}}}}]\n")
    with pytest.raises(RecipeError) as info:
        recipe.load(path)
    complaints = _complaints(str(info.value).split(": ", 1)[1])
    assert complaints and all(c.startswith(f"model.kwargs.{key}: [1] is not allowed: ") for c in complaints), complaints


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
        ("model: !!python/object/apply:os.system ['touch PWNED']\n", "tags are not allowed in a recipe: !!python/"),
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
    damaged = None
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
    elif case == "flipped":
        damaged = _flip_inside_largest_tensor(ROOT / "model.pt", path)
    return path, {
        "evil": "refused: the file holds objects other than tensors",
        "module": "refused: the file holds objects other than tensors",
        "shapes": "tensor shapes do not fit TextClassifier: size mismatch for fc.weight",
        "notzip": unreadable,
        "truncated": unreadable,
        "foreign_zip": unreadable,
        "cut_inside": unreadable,
        "short_record": unreadable,
        "int_value": "expected a state_dict (names -> tensors); 'embedding.weight' holds int",
        "list_among_tensors": "expected a state_dict (names -> tensors); 'embedding.weight' holds list",
        "missing": "weights file not found",
        "flipped": f"damaged: {damaged!r} fails its CRC-32 check",
    }[case]


def _flip_inside_largest_tensor(source: Path, path: Path) -> str:
    """``source`` with 16 bytes flipped in the middle of its largest tensor record, and that record's name. The zip
    is intact and torch.load reads it, as other weights; only the record's stored CRC-32 tells."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    middle = info.header_offset + 30 + name_length + extra_length + info.compress_size // 2
    data[middle : middle + 16] = bytes(byte ^ 0xFF for byte in data[middle : middle + 16])
    path.write_bytes(data)
    return info.filename


WEIGHTS_CASES = [
    "evil",
    "module",
    "shapes",
    "notzip",
    "truncated",
    "flipped",
    *checkpoints.ZIP_CASES,
    *checkpoints.NON_TENSORS,
]


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
        "data: {synthetic: {size: 8}, min_samples: 8}\nstages: [{export: {}}]\n"
    )
    assert main(["run", str(path), "--quiet", "--no-bench"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and weights.name in err and message in err, err
    assert not (project / "PWNED").exists()
    assert not (project / "reports" / "r").exists()


def test_flipped_bytes_inside_a_tensor_are_refused_by_task_py(tmp_path):
    """torch.load does not check the zip's CRC-32s: bytes flipped inside a stored tensor load silently, as other
    weights. task.py checks them first and refuses the file in one line naming the damaged record (``workbench
    run``: test_untrusted_weights_get_one_line[flipped])."""
    weights = tmp_path / "model.pt"
    name = _flip_inside_largest_tensor(ROOT / "model.pt", weights)
    good, bad = torch.load(ROOT / "model.pt", weights_only=True), torch.load(weights, weights_only=True)
    assert good.keys() == bad.keys() and not all(torch.equal(good[key], bad[key]) for key in good)
    with pytest.raises(ValueError) as info:
        task.convert(weights, tmp_path / "x.onnx")
    assert str(info.value) == (
        f"{weights}: damaged: {name!r} fails its CRC-32 check (its bytes changed after torch.save wrote them); "
        "not loaded"
    )
    assert not (tmp_path / "x.onnx").exists()


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


# --- full and read-only disks (concurrent runs: tests/test_run.py) ---------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


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
        "data: {synthetic: {size: 20, seed: 3, max_len: 32}, min_samples: 20}\nstages: [{export: {}}]\n"
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
        "data: {synthetic: {size: 20, seed: 3, max_len: 32}, min_samples: 20}\nstages: [{export: {}}]\n"
    )
    done = _in_mount(
        project,
        f"mkdir mnt/reports && mount -o remount,ro {project}/mnt && "
        f"{sys.executable} -m workbench run {path} --quiet --no-bench",
        size="1m",
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "not writable" in done.stderr and "Traceback" not in done.stderr
