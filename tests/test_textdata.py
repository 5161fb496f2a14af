"""Labelled text read from real CSV and JSONL files, tokenized by a real WordPiece tokenizer trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench import hf_example, textdata
from workbench.data import Sample
from workbench.errors import InputError

NAMES = ("negative", "positive")


@pytest.fixture(scope="session")
def tokenizer_json(tmp_path_factory) -> Path:
    corpus = [text for text, _ in hf_example.texts(500, seed=0, stream=0)]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    hf_example.train_tokenizer(corpus).save(str(path))
    return path


@pytest.fixture(scope="session")
def hf_tokenizer(tokenizer_json):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), pad_token="[PAD]", unk_token="[UNK]")


def _csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(body, encoding="utf-8")
    return path


def _load(path: Path, tokenizer, *, max_length: int = 32, **kwargs) -> tuple[list[Sample], list[int]]:
    """The samples of a text file and each one's tokenized length before the cut."""
    rows = list(textdata.text_stream(
        path, text="text", label="label", tokenizer=tokenizer, max_length=max_length, label_names=NAMES, **kwargs
    ))
    return [sample for sample, _, _ in rows], [whole for _, _, whole in rows]


def test_csv_labels_by_name_or_index_and_both_tokenizers_agree(tmp_path, tokenizer_json, hf_tokenizer):
    path = _csv(
        tmp_path,
        'text,label,source\nThe movie was great,positive,a\n"The food, honestly, was awful",0,b\n'
        "\nthis film was good,1,c\n",
    )
    samples, wholes = _load(path, hf_tokenizer)
    assert [s.label for s in samples] == [1, 0, 1]
    assert list(samples[0].tokens) == hf_tokenizer("The movie was great")["input_ids"]
    assert samples[0].tokens[0] == hf_tokenizer.convert_tokens_to_ids("[CLS]")
    assert wholes == [len(s.tokens) for s in samples], "nothing cut"
    assert _load(path, textdata.load_tokenizer(tokenizer_json)) == (samples, wholes)


def test_jsonl_takes_int_and_name_labels(tmp_path, hf_tokenizer):
    path = tmp_path / "data.jsonl"
    rows = [{"text": "the show was lovely", "label": "positive"}, {"text": "my new phone was poor", "label": 0}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    samples, _ = _load(path, hf_tokenizer)
    assert [s.label for s in samples] == [1, 0]


def test_truncation_is_counted_and_keeps_the_closing_token(tmp_path, tokenizer_json, hf_tokenizer):
    long = " ".join(["the movie was great and lovely"] * 10)
    path = _csv(tmp_path, f"text,label\n{long},positive\n{long} again,positive\nbad,negative\n")
    whole = len(hf_tokenizer(long)["input_ids"])
    for tokenizer in (hf_tokenizer, textdata.load_tokenizer(tokenizer_json)):
        samples, wholes = _load(path, tokenizer, max_length=16)
        assert [len(s.tokens) for s in samples] == [16, 16, 3]
        assert samples[0].tokens[-1] == hf_tokenizer.convert_tokens_to_ids("[SEP]")
        assert wholes == [whole, whole + 1, 3]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            'text,label\n"a film,\nin two lines",positive\nthe food was good,neutral\n',
            r"data.csv:4: label 'neutral' is not one of the model's classes; allowed: negative \(0\), positive \(1\)$",
        ),
        ("text,label\nthe food was good,2\n", r"data.csv:2: label '2' is not one of the model's classes"),
        ("review,label\nthe food was good,1\n", r"data.csv: no column 'text'; the columns are: review, label$"),
        ("text,label\nthe food was good,1\n  ,0\n", r"data.csv:3: empty text in 'text'$"),
        ("", r"data.csv: empty file"),
        ("text,label\n", r"data.csv: no samples"),
        ("text,label\ngood,1,extra\n", r"data.csv:2: 3 fields, but the header has 2$"),
    ],
    ids=["label-name", "label-index", "no-column", "empty-text", "empty-file", "header-only", "ragged-row"],
)
def test_bad_csv_is_refused_with_one_line_naming_the_place(tmp_path, hf_tokenizer, body, message):
    with pytest.raises(InputError, match=message):
        _load(_csv(tmp_path, body), hf_tokenizer)


@pytest.mark.parametrize(
    "rows, message",
    [
        (['{"text": "good", "label": 1}', '{"text": "bad", "label": 5}'], r"data.jsonl:2: label 5 is not one of"),
        (['{"text": "good", "label": true}'], r"data.jsonl:1: label True is not one of"),
        (['{"review": "good", "label": 1}'], r"data.jsonl:1: no key 'text'; this line has: review, label$"),
        (['{"text": 7, "label": 1}'], r"data.jsonl:1: 'text' must be a string, got int$"),
    ],
    ids=["label-range", "label-bool", "no-key", "text-not-string"],
)
def test_bad_jsonl_is_refused_with_one_line_naming_the_line(tmp_path, hf_tokenizer, rows, message):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match=message):
        _load(path, hf_tokenizer)


def test_other_refusals(tmp_path, tokenizer_json, hf_tokenizer):
    path = _csv(tmp_path, "text,label\nthe movie was great,positive\n")
    with pytest.raises(InputError, match=r"max_length 2 leaves no room for text: the tokenizer adds 2 special ids"):
        _load(path, hf_tokenizer, max_length=2)
    with pytest.raises(InputError, match=r"data.csv:2: the tokenizer gave id \d+, outside the model's ids \[0, 9\]"):
        _load(path, hf_tokenizer, vocab_size=10)
    with pytest.raises(InputError, match=r"unknown data format 'tsv'; choose one of csv, jsonl"):
        _load(path.rename(tmp_path / "data.tsv"), hf_tokenizer)
    with pytest.raises(InputError, match=r"nope.json: tokenizer file not found"):
        textdata.load_tokenizer(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"version": "1.0"}')
    with pytest.raises(InputError, match=r"bad.json: not a tokenizers tokenizer.json"):
        textdata.load_tokenizer(tmp_path / "bad.json")


def test_resolution_floor_and_thresholds_finer_than_one_sample():
    assert str(textdata.resolution(500)) == "one sample = 0.20% of agreement and accuracy (500 samples)"
    textdata.require_samples(50)
    with pytest.raises(InputError, match=r"has 4 samples, fewer than the floor of 50 \(one sample = 25.00% of"):
        textdata.require_samples(4)
    textdata.require_samples(4, floor=4)
    warnings = textdata.coarse_thresholds(100, min_agreement=0.995, max_accuracy_drop=0.005)
    assert warnings == (
        "min_agreement 0.995 is finer than one sample of 100 (1.00%): a single sample fails it; "
        "it tolerates one from 200 samples on",
        "max_accuracy_drop 0.005 is finer than one sample of 100 (1.00%): a single sample fails it; "
        "it tolerates one from 200 samples on",
    )
    assert textdata.coarse_thresholds(200, min_agreement=0.995, max_accuracy_drop=0.005) == ()
    assert textdata.coarse_thresholds(10, min_agreement=0.9, max_accuracy_drop=0.1) == ()  # 1 - 0.9 < 0.1 in floats
    assert textdata.coarse_thresholds(100, min_agreement=1.0, max_accuracy_drop=0.0) == ()  # exact by intent
    assert textdata.coarse_thresholds(100, min_agreement=None, max_accuracy_drop=None) == ()
