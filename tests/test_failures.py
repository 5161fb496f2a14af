"""What a model or a tool does wrong is a failed row in a written report, exit 1, and no traceback on the terminal:
an export that freezes a length, a forward that refuses some lengths, a stage tool that raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from workbench.cli import main
from workbench.stages import REGISTRY, Params, Source, stage

HERE = Path(__file__).resolve().parent
VOCAB, WIDTH = 120, 16


class FrozenLength(nn.Module):
    """Reshapes with Python ints read off the input's shape: the TorchScript exporter bakes the example's in."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.head = nn.Linear(WIDTH, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        batch, length = int(input_ids.shape[0]), int(input_ids.shape[1])
        per_token = self.head(self.embed(input_ids).reshape(batch * length, WIDTH))
        return per_token.reshape(batch, length, 2).mean(dim=1)


class ShortOnly(nn.Module):
    """Refuses inputs longer than 20 tokens (the evaluation set stays below; the exporter asks for any length)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.head = nn.Linear(WIDTH, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > 20:
            raise ValueError(f"ShortOnly takes at most 20 tokens, got {input_ids.shape[1]}")
        return self.head(self.embed(input_ids).mean(dim=1))


class Plain(nn.Module):
    """Mean of the embeddings, then a linear head: exports at any length."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.head = nn.Linear(WIDTH, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids).mean(dim=1))


RECIPE = """\
root: {root}
reports: {tmp}/reports
cache: {tmp}/cache
model:
  class: test_failures:{cls}
  weights: {tmp}/weights.pt
  inputs: [{{name: input_ids, feed: ids, dtype: int64, axes: [batch, sequence]}}]
  vocab_size: {vocab}
data:
  synthetic: {{size: 64, seed: 3, min_len: 4, max_len: 20}}
  batch_size: 16
bench: {{enabled: false}}
threads: 1
stages:
{stages}"""


def _run(tmp_path: Path, cls: type[nn.Module], stages: str, capfd) -> tuple[int, str, dict, str]:
    torch.manual_seed(0)
    torch.save(cls().state_dict(), tmp_path / "weights.pt")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(root=HERE, tmp=tmp_path, cls=cls.__name__, vocab=VOCAB, stages=stages))
    code = main(["run", str(recipe), "--quiet"])
    out, err = capfd.readouterr()
    folder = tmp_path / "reports" / "recipe"
    assert (folder / "report.md").is_file(), out + err  # the report is written whatever failed
    return code, out + err, json.loads((folder / "metrics.json").read_text()), (folder / "report.md").read_text()


def test_an_export_that_freezes_a_length_fails_its_rows_on_other_lengths(tmp_path, capfd):
    stages = "  - export: {exporter: torchscript}\n  - simplify: {}\n"
    code, terminal, metrics, report = _run(tmp_path, FrozenLength, stages, capfd)
    assert code == 1 and "Traceback" not in terminal
    export = metrics["stages"][0]
    assert export["artifact"] is not None and not export["passed"]
    (check,) = export["checks"]
    assert check["row"] == "onnxruntime:export" and check["check"] is None
    assert "Reshape" in check["error"] and "input_ids" in check["error"]  # the engine's words, and the shape
    assert metrics["skipped"] == ["simplify"] and metrics["skip_reason"] == "export failed"
    assert "**FAILED**" in report and "Reshape" in report


def test_a_forward_that_refuses_some_lengths_fails_the_export_naming_the_limit(tmp_path, capfd):
    code, terminal, metrics, report = _run(tmp_path, ShortOnly, "  - export: {}\n  - simplify: {}\n", capfd)
    assert code == 1 and "Traceback" not in terminal
    export = metrics["stages"][0]
    assert export["artifact"] is None and not export["passed"]
    assert "narrows sequence to 0..20 (declared 1..)" in export["error"] and "max_length" in export["error"]
    assert metrics["reference"]["samples"] == 64  # the reference ran: every evaluation sample is short enough
    assert metrics["skipped"] == ["simplify"] and "narrows sequence to 0..20" in report


class ExplodeParams(Params):
    pass


@pytest.fixture
def exploding_stage():
    @stage("explode", params=ExplodeParams)
    def explode(source: Source, params: ExplodeParams, dst: Path):
        raise RuntimeError("the tool crashed\nsecond line of its message")  # explode_line

    yield
    REGISTRY.pop("explode")


def test_a_stage_tool_that_raises_is_a_failed_row(tmp_path, capfd, exploding_stage):
    source = Path(__file__).read_text().splitlines()
    explode_line = next(n for n, line in enumerate(source, 1) if line.endswith("# explode_line"))
    stages = "  - export: {}\n  - explode: {}\n  - simplify: {}\n"
    code, terminal, metrics, report = _run(tmp_path, Plain, stages, capfd)
    assert code == 1 and "Traceback" not in terminal
    export, explode = metrics["stages"]
    assert export["passed"] and not explode["passed"] and explode["artifact"] is None
    assert explode["error"] == (  # the tool's words, and where in the tool it raised
        "explode raised: RuntimeError: the tool crashed second line of its message "
        f"(raised at test_failures.py:{explode_line} in explode)"
    )
    assert metrics["skipped"] == ["simplify"] and metrics["skip_reason"] == "explode failed to produce an artifact"
    assert "- **FAILED**: explode raised: RuntimeError: the tool crashed" in report
