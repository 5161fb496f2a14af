"""A real tiny Hugging Face folder, built offline once per session: loading, refusals, feeding, ONNX export."""

from __future__ import annotations

import json

import shutil
import subprocess
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from workbench import data, hf_example, huggingface, textdata
from workbench.errors import InputError
from workbench.store.files import file_sha256

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> hf_example.HFExample:
    return hf_example.build(tmp_path_factory.mktemp("hf"), steps=80, seed=0, samples=300)


@pytest.fixture(scope="session")
def loaded(tiny) -> huggingface.HFModel:
    return huggingface.load(tiny.model_dir)


def _copy(tiny: hf_example.HFExample, tmp_path: Path, *, drop: tuple[str, ...] = ()) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(tiny.model_dir, folder)
    for name in drop:
        (folder / name).unlink()
    return folder


def test_build_writes_a_safetensors_folder_and_a_csv_the_model_gets_right(tiny):
    names = {p.name for p in tiny.model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(name.endswith(".bin") for name in names)
    assert tiny.csv.read_text().splitlines()[0] == "text,label" and tiny.samples == 300
    assert tiny.accuracy >= 0.97


def test_load_describes_the_folder(tiny, loaded):
    info = loaded.info
    assert info.class_names == ("negative", "positive") and info.model_type == "bert"
    assert (info.num_attention_heads, info.hidden_size, info.max_positions) == (4, 64, 128)
    assert info.vocab_size == len(loaded.tokenizer) and loaded.pad_token_id == data.PAD_ID == 0
    assert loaded.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert [(i.name, i.feed) for i in loaded.inputs] == [
        ("input_ids", "ids"),
        ("attention_mask", "mask"),
        ("token_type_ids", "zeros"),
    ]
    assert set(info.files) == {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    assert info.files["model.safetensors"] == file_sha256(tiny.model_dir / "model.safetensors")
    assert not loaded.module.training and loaded.module.config._attn_implementation == "eager"


@pytest.mark.parametrize(
    ("positions", "tokenizer_says", "longest"),
    [(130, 128, 128), (128, 512, 128), (514, int(1e30), 514), (128, None, 128), (None, int(1e30), None)],
)
def test_the_longest_input_is_the_configs_positions_capped_by_the_tokenizer(
    tiny, tmp_path, positions, tokenizer_says, longest
):
    """RoBERTa's config counts two positions its inputs cannot use (514 for 512 tokens): its tokenizer's
    model_max_length says 512. transformers writes 1e30 for "no limit"."""
    folder = _copy(tiny, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": positions}))
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings.pop("model_max_length", None)
    written = settings if tokenizer_says is None else {**settings, "model_max_length": tokenizer_says}
    (folder / "tokenizer_config.json").write_text(json.dumps(written))
    assert huggingface.inspect(folder).max_positions == longest


def test_the_key_follows_the_tokenizer_files(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    before = huggingface.inspect(folder).key
    assert before == huggingface.inspect(tiny.model_dir).key
    config = folder / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"do_lower_case": true', '"do_lower_case": false'))
    assert huggingface.inspect(folder).key != before


def test_the_workbench_feeds_give_the_tokenizers_own_logits_and_a_high_accuracy(tiny, loaded):
    import torch

    rows = list(textdata.text_stream(
        tiny.csv, text="text", label="label", tokenizer=loaded.tokenizer, max_length=64,
        label_names=loaded.info.class_names,
    ))
    samples = [sample for sample, _, _ in rows]
    assert len(samples) == 300 and all(whole <= 64 for _, _, whole in rows)
    right = 0
    with torch.no_grad():
        for batch in data.padded_batches(samples, max_batch=64):
            feeds = loaded.feed_spec.feeds(batch.tokens, batch.mask)
            logits = loaded.wrapper(*(torch.from_numpy(a) for a in feeds.values())).numpy()
            right += int((logits.argmax(1) == batch.labels).sum())
        texts = [r.text for r in islice(textdata.row_stream(tiny.csv, text="text", label="label"), 64)]
        own = loaded.tokenizer(texts, padding=True, return_tensors="pt")  # what the HF pipeline would feed
        assert not own["token_type_ids"].any()  # single texts: all zeros, as the workbench feeds them
        expected = loaded.module(**own).logits.numpy()
    first = next(data.padded_batches(samples, max_batch=64))
    ours = loaded.wrapper(*(torch.from_numpy(a) for a in loaded.feed_spec.feeds(first.tokens, first.mask).values()))
    np.testing.assert_allclose(ours.detach().numpy(), expected, atol=1e-5, rtol=0)
    assert right / len(samples) >= 0.97


def _pickle_only(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


def _base_model(folder: Path) -> None:
    from transformers import BertConfig, BertModel

    BertModel(BertConfig.from_pretrained(folder)).save_pretrained(folder, safe_serialization=True)


@pytest.mark.parametrize(
    "change, message",
    [
        (_pickle_only, r"refused: weights only as a pickle \(pytorch_model.bin\).*safe_serialization=True"),
        (
            lambda f: [(f / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")],
            r"no tokenizer files .*found: config.json, model.safetensors$",
        ),
        (lambda f: (f / "config.json").unlink(), r"no config.json.*found: model.safetensors, tokenizer.json"),
        (_base_model, r"weights do not hold classifier.bias, classifier.weight: .*at random"),
        (lambda f: (f / "config.json").write_text("{"), r"config.json: not readable as JSON"),
    ],
    ids=["pickle-only", "no-tokenizer", "no-config", "no-classifier-head", "bad-config"],
)
def test_unusable_folders_are_refused_with_one_line(tiny, tmp_path, change, message):
    folder = _copy(tiny, tmp_path)
    change(folder)
    with pytest.raises(InputError, match=message) as caught:
        huggingface.load(folder)
    assert "\n" not in str(caught.value)


def test_without_transformers_the_install_command_is_named(tiny):
    code = (
        "import sys; sys.modules['transformers'] = None\n"  # an environment without the extra
        "from workbench import huggingface\nfrom workbench.errors import InputError\n"
        f"try:\n    huggingface.load({str(tiny.model_dir)!r})\nexcept InputError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == 'a Hugging Face folder needs the transformers library: pip install -e ".[transformers]"'


def test_the_wrapper_exports_with_dynamic_shapes_and_matches_onnxruntime(loaded, tmp_path):
    import onnxruntime as ort
    import torch

    batch, sequence = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("sequence", min=1, max=128)
    shapes = tuple({0: batch, 1: sequence} for _ in loaded.input_names)
    args = tuple(torch.from_numpy(a) for a in loaded.feed_spec.example(16).values())  # batch 2, padded second row
    path = tmp_path / "hf.onnx"
    with torch.no_grad():
        names = list(loaded.input_names)
        torch.onnx.export(
            loaded.wrapper,
            args,
            path,
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=names,
            output_names=["logits"],
            optimize=True,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n, length in ((1, 7), (3, 40), (5, 128)):
        mask = (np.arange(length) < rng.integers(1, length + 1, size=(n, 1))).astype(np.int64)
        feeds = loaded.feed_spec.feeds(rng.integers(0, loaded.info.vocab_size, (n, length)), mask)
        got = session.run(["logits"], feeds)[0]
        with torch.no_grad():
            want = loaded.wrapper(*(torch.from_numpy(a) for a in feeds.values())).numpy()
        assert got.shape == (n, 2)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
