"""A report that reads on its own (issue 15, item 4), checked on one small real run: rows in stage order, each verdict
beside its rule, a legend for every table's abbreviations, engine notes once per engine, a headline that names the
engines that ran each stage, chart texts inside their figures, and a rerun that keeps the time of the real work."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import task
from workbench.cli import main
from workbench.ops import INT8_OPS
from workbench.precision import FP32
from workbench.results import Run
from workbench.runtimes import ENGINES, REFERENCE, TORCH_INT8, EngineParams, NotApplicable, Runner, engine
from workbench.runtimes import onnxruntime as ort_engine

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
STAGES = ("export", "simplify", "ort_optimize", "quantize_dynamic")  # ort_optimize: simplify's graph again
ENGINE_NAMES = ("onnxruntime", "openvino", "int8-shy")
INT8_RULE = "int8: agreement >= 90.0%, accuracy drop <= 10.00 points"
FP32_RULE = f"fp32: {FP32.accept.describe()}"
BENCH = "bench: {budget_seconds: 0.02, latency_lengths: [4], throughput: {batch: 2, length: 4}, chart_lengths: [2, 4], "

RECIPE = f"""\
model:
  class: task:TextClassifier
  weights: tiny.pt
  kwargs: {{vocab_size: 120, embed_dim: 8, hidden_dim: 8}}
  vocab_size: 120
data: {{synthetic: {{size: 60, seed: 1, min_len: 3, max_len: 12}}, batch_size: 16, min_samples: 10}}
runtimes: [{", ".join(ENGINE_NAMES)}]
layer_errors: {{enabled: false}}
{BENCH}tune: false}}
stages:
  - export: {{exporter: torchscript}}
  - simplify: {{}}
  - ort_optimize: {{model_type: bert, opt_level: 1}}
  - quantize_dynamic: {{op_types: [LSTM, Gemm, MatMul, Gather], accept: {{min_agreement: 0.9, max_accuracy_drop: 0.1}}}}
"""


@dataclass(frozen=True)
class Done:
    """One real run: its folder, run model, report text and what the terminal showed."""

    folder: Path
    run: Run
    report: str
    terminal: str


def _run(recipe: Path, *extra: str) -> Done:
    """``workbench run`` in this process (so the engine registered here exists), its terminal 200 columns wide."""
    out = io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(io.StringIO()),
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("COLUMNS", "200")
        code = main(["run", str(recipe), *extra])
    folder = recipe.parent / "reports" / recipe.stem
    done = Done(
        folder, Run.load((folder / "metrics.json").read_text()), (folder / "report.md").read_text(), out.getvalue()
    )
    assert code == 0, done.run.stages[-1].failures
    return done


def _project(tmp: Path) -> Path:
    shutil.copy(ROOT / "task.py", tmp / "task.py")
    torch.manual_seed(3)
    torch.save(task.TextClassifier(vocab_size=120, embed_dim=8, hidden_dim=8).state_dict(), tmp / "tiny.pt")
    return tmp


@pytest.fixture(scope="module")
def int8_shy() -> Iterator[None]:
    """An engine that refuses every file with int8 ops (onnxruntime for the rest): a stage it does not run."""

    @engine("int8-shy")
    def load(path: Path, params: EngineParams, threads: int) -> Runner:
        import onnx

        ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
        if ops & INT8_OPS:
            raise NotApplicable(f"int8-shy runs no int8 ops ({', '.join(sorted(ops & INT8_OPS))})")
        return ort_engine.load_file(path, threads)

    yield
    del ENGINES["int8-shy"]


@pytest.fixture(scope="module")
def done(tmp_path_factory, int8_shy) -> Done:
    project = _project(tmp_path_factory.mktemp("report"))
    (project / "toy.yaml").write_text(RECIPE)
    return _run(project / "toy.yaml")


def _tables(text: str) -> list[tuple[list[str], list[list[str]], str]]:
    """Every markdown table: its header, its rows (cells split at " | ", so a rule's |diff| stays whole), and its
    legend: the paragraph just before it and the text after it up to the next heading or table."""
    blocks = text.split("\n\n")
    found = []
    for index, block in enumerate(blocks):
        lines = block.strip("\n").splitlines()
        if len(lines) < 2 or not lines[0].startswith("| ") or not lines[1].startswith("|---"):
            continue
        header, *rows = ([cell.strip() for cell in line[2:-2].split(" | ")] for line in [lines[0], *lines[2:]])
        after = []
        for later in blocks[index + 1 :]:
            if later.startswith(("#", "| ")):
                break
            after.append(later)
        before = blocks[index - 1] if index and not blocks[index - 1].startswith(("#", "| ")) else ""
        found.append((header, rows, "\n\n".join([before, *after])))
    return found


def _table(text: str, first: str) -> tuple[list[str], list[list[str]]]:
    header, rows, _ = next(t for t in _tables(text) if t[0][0] == "row" and t[0][1] == first)
    return header, rows


def test_rows_come_in_stage_order_in_every_table_and_the_terminal(done):
    run = done.run
    assert run.record("ort_optimize").same_graph_as == "simplify"  # the case that used to come out of order
    expected = [f"{e}:{s}" for s in STAGES for e in ENGINE_NAMES]
    _, summary = _table(done.report, "artifact")
    assert [r[0] for r in summary] == [REFERENCE, *expected]
    _, speed = _table(done.report, "b1 l4 ms")
    ran = [row for row in expected if row != "int8-shy:quantize_dynamic"]
    assert [r[0] for r in speed] == [REFERENCE, TORCH_INT8, *ran]
    shown = [line.split()[0] for line in done.terminal.splitlines() if line.split() and line.split()[0] in expected]
    assert shown == expected


def test_each_verdict_stands_beside_the_rule_that_judged_it(done):
    header, rows = _table(done.report, "artifact")
    assert header[-2:] == ["verdict", "rule"]
    by_row = {r[0]: r for r in rows}
    for stage in STAGES[:-1]:
        for name in ENGINE_NAMES:
            assert by_row[f"{name}:{stage}"][-2:] == ["passed", FP32_RULE]
    assert by_row["onnxruntime:quantize_dynamic"][-2:] == ["passed", INT8_RULE]
    assert by_row["openvino:quantize_dynamic"][-2:] == ["passed", INT8_RULE]
    assert by_row["int8-shy:quantize_dynamic"][-2:] == ["not applicable", "-"]


MASKED_RECIPE = f"""\
root: {HERE}
reports: {{tmp}}/reports
cache: {{tmp}}/cache
model:
  class: test_report:MaskedBag
  weights: {{tmp}}/bag.pt
  inputs:
    - {{{{name: input_ids, feed: ids, dtype: int64, axes: [batch, sequence]}}}}
    - {{{{name: attention_mask, feed: mask, dtype: int64, axes: [batch, sequence]}}}}
  vocab_size: 120
data: {{{{synthetic: {{{{size: 40, seed: 2, min_len: 3, max_len: 12}}}}, batch_size: 8, min_samples: 10}}}}
layer_errors: {{{{enabled: false}}}}
stages:
  - export: {{{{exporter: torchscript}}}}
  - quantize_dynamic: {{{{op_types: [Gemm, MatMul], accept: {{{{min_agreement: 0.9, max_accuracy_drop: 0.1}}}}}}}}
"""


class MaskedBag(nn.Module):
    """Embeddings averaged over the mask's ones, a hidden layer, two logits: a model that takes an attention mask."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(120, 16)
        self.mlp = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask.unsqueeze(-1).to(torch.float32)
        return self.mlp((self.embed(input_ids) * keep).sum(1) / keep.sum(1).clamp(min=1.0))


def test_the_padding_table_names_each_rows_rule(tmp_path):
    torch.manual_seed(0)
    torch.save(MaskedBag().state_dict(), tmp_path / "bag.pt")
    (tmp_path / "bag.yaml").write_text(MASKED_RECIPE.format(tmp=tmp_path))
    done = _run(tmp_path / "bag.yaml", "--no-bench")
    padding = done.report.split("### Padding", 1)[1]
    header, rows = _table(padding, "max abs diff, padded vs unpadded")
    assert header[-2:] == ["verdict", "rule"]
    by_row = {r[0]: r[-2:] for r in rows}
    assert by_row == {
        REFERENCE: ["passed", FP32.accept.describe()],
        "onnxruntime:export": ["passed", FP32_RULE],
        "onnxruntime:quantize_dynamic": ["passed", INT8_RULE],
    }
    assert not _unexplained(padding.split("\n## ", 1)[0]), _unexplained(padding.split("\n## ", 1)[0])


# header words (or cells) -> what the table's legend must say about them
GLOSSARY = {
    r"\bb\d+ l\d+\b": ("batch", "sequence length"),
    r"\bms\b": ("milliseconds",),
    r"samples/s": ("samples per second",),
    r"^x PyTorch fp32": ("`x PyTorch fp32`",),
    r"^x PyTorch int8": ("`x PyTorch int8`",),
    r"^ran as$": ("`ran as`",),
    r"^of export$": ("`of export`",),
    r"abs err": ("abs err`",),
    r"^agreement$": ("top-1",),
    r"^rule$": ("rule",),
}
CELLS = {r"^\d+\.\d+ \(\d+\.\d+\)$": ("90th percentile",), r"\[\d+\.\d+-\d+\.\d+\]": ("interval",)}


def _unexplained(report: str) -> list[str]:
    """What a table's legend leaves out: per table, each glossary word its header or cells call for."""
    missing = []
    for header, rows, legend in _tables(report):
        wanted = {w for h in header for pattern, words in GLOSSARY.items() if re.search(pattern, h) for w in words}
        wanted |= {
            w for r in rows for c in r for pattern, words in CELLS.items() if re.search(pattern, c) for w in words
        }
        missing += [f"table {header[:3]}...: no legend for {word!r}" for word in sorted(wanted) if word not in legend]
    return missing


def test_every_table_has_a_legend_for_its_abbreviations(done):
    assert len(_tables(done.report)) >= 5
    assert not _unexplained(done.report), "\n".join(_unexplained(done.report))


def test_engine_notes_come_once_per_engine(done):
    notes = done.report.split("Engine notes:\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    engines = [line.split()[1] for line in notes]
    assert engines == ["openvino"]  # onnxruntime ran int8; int8-shy ran no int8 file
    assert "openvino:quantize_dynamic" in notes[0] and "without int8 arithmetic" in notes[0]
    for header, rows, _ in _tables(done.report):
        assert not [c for r in rows for c in r if "int8 arithmetic" in c], f"a note on a row of {header[:3]}"


def test_the_headline_names_per_stage_the_engines_that_ran_it(done):
    ran = {s.stage: [c.engine for c in s.ran] for s in done.run.stages}
    assert ran["quantize_dynamic"] == ["onnxruntime", "openvino"]  # int8-shy refused it
    for text in (done.report.split("\n\n")[1], next(line for line in done.terminal.splitlines() if "PASSED" in line)):
        named = re.search(r"\(([^()]*)\)\.$", text).group(1)
        stated = dict(part.split(" on ", 1) for part in named.split("; "))
        assert {stage: engines.split(", ") for stage, engines in stated.items()} == ran


def _texts_outside(fig) -> list[str]:
    """The visible, non-empty texts of a figure whose box is not inside it (tick labels off the axis not counted)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hidden = set()
    for axes in fig.axes:
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - 1e-9 * abs(low) <= tick.get_loc() <= high + 1e-9 * abs(high):
                    hidden |= {id(tick.label1), id(tick.label2)}
    inside = fig.bbox.padded(0.5)
    out = []
    for text in fig.findobj(Text):
        if id(text) in hidden or not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if not (inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)):
            out.append(f"{text.get_text()!r} at {box.bounds} outside {fig.bbox.bounds}")
    return out


def _stretched(run: Run, median_ms: float | None) -> Run:
    """The run with PyTorch fp32 at ``median_ms`` (None: as measured): 99999.99 ms spans far more than 10x and
    gives the widest value label."""
    if median_ms is None:
        return run
    bench = run.bench

    def slow(timings: tuple) -> tuple:
        return tuple(t.model_copy(update={"median_ms": median_ms}) if t.contender == REFERENCE else t for t in timings)

    return run.model_copy(
        update={"bench": bench.model_copy(update={"timings": slow(bench.timings), "by_length": slow(bench.by_length)})}
    )


def test_every_text_of_every_chart_lies_inside_its_figure(done, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from workbench.render import charts, decision

    drawn: dict[str, list[str]] = {}
    scales: dict[str, str] = {}
    save = Figure.savefig

    def checked(fig: Figure, path, *args, **kwargs) -> None:
        drawn[Path(path).name] = _texts_outside(fig)
        scales[Path(path).name] = fig.axes[-1].get_xscale() if len(fig.axes) == 2 else ""
        if len(fig.axes) == 2:  # the size/latency chart: its rows in the speed table's order
            drawn["rows"] = [t.get_text() for t in fig.axes[1].get_yticklabels()]
        save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    for median_ms in (None, 99999.99):
        run = _stretched(done.run, median_ms)
        names = list(charts.write(run, tmp_path).values()) + list(decision.draw(run, tmp_path).values())
        assert len(names) >= 3 and set(names) <= set(drawn)
        assert not [problem for name in names for problem in drawn[name]], drawn
        assert drawn["rows"] == [REFERENCE, TORCH_INT8, *(c.row for c in run.bench.contenders if c.stage)]
    assert scales["size_latency.png"] == "log"  # PyTorch fp32 at 100 s: the latency axis is logarithmic


def test_a_rerun_that_reuses_everything_keeps_the_time_of_the_run_that_did_the_work(tmp_path):
    project = _project(tmp_path)
    text = RECIPE.split("stages:")[0] + "stages:\n  - export: {exporter: torchscript}\n"
    text = text.replace(f"runtimes: [{', '.join(ENGINE_NAMES)}]", "runtimes: [onnxruntime]")
    (project / "again.yaml").write_text(text.replace(f"{BENCH}tune: false}}", "bench: {enabled: false}"))
    first = _run(project / "again.yaml")
    assert first.run.time.reused_from is None and not first.run.reference.cached
    for _ in range(2):  # the second rerun still points at the run that did the work, not at the first rerun
        again = _run(project / "again.yaml")
        assert all(s.cached for s in again.run.stages) and again.run.reference.cached
        assert again.run.time.reused_from == first.run.started
        assert (again.run.time.total, again.run.time.validation) == (first.run.time.total, first.run.time.validation)
        assert (
            f"the work was done by the run of {first.run.started}: the command took {first.run.time.total:.1f} s"
            in again.report
        )
        assert "this rerun reused all of it" in again.report
