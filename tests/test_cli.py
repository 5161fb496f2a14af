"""`compare` and `bench` as tools people pipe (issue 15, item 6): ratios compared as ratios and said of what, one
report compared with nothing, a path that is no report folder in one line, --format output that parses, tables that
keep words whole at 80 columns, and help text on every subcommand and option."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny_models import TINY_LSTM, save_tiny_lstm

from workbench.cli import _parser, main
from workbench.results import Run
from workbench.runtimes import REFERENCE

ROOT = Path(__file__).resolve().parent.parent
FACTOR = 4.0  # the second report's PyTorch fp32 is this many times slower, so every speed-up is this many times higher

RECIPE = TINY_LSTM + """\
data: {synthetic: {size: 40, seed: 1, min_len: 3, max_len: 12}, batch_size: 16, min_samples: 10}
layer_errors: {enabled: false}
bench: {budget_seconds: 0.02, latency_lengths: [4], throughput: {batch: 2, length: 4}, chart_lengths: [2, 4], tune: false}
stages:
  - export: {exporter: torchscript}
  - quantize_dynamic: {op_types: [LSTM, Gemm, MatMul, Gather], accept: {min_agreement: 0.9, max_accuracy_drop: 0.1}}
"""


@dataclass(frozen=True)
class Reports:
    """A real run's report folder, a second folder of the same run with PyTorch fp32 slower, the recipe, the
    terminal the run printed at 80 columns."""

    first: Path
    second: Path
    recipe: Path
    terminal: str


def _slower_reference(run: Run, name: str) -> Run:
    """``run`` as if PyTorch fp32 had been ``FACTOR`` times slower: its latencies and every speed-up over it."""
    bench = run.bench
    assert bench is not None
    timings = tuple(
        t.model_copy(update={"median_ms": t.median_ms * FACTOR}) if t.contender == REFERENCE else t
        for t in bench.timings
    )
    speedups = tuple(
        s.model_copy(update={k: getattr(s, k) * FACTOR for k in ("value", "low", "high") if getattr(s, k) is not None})
        if s.baseline == REFERENCE and s.row != REFERENCE
        else s
        for s in bench.speedups
    )
    return run.model_copy(
        update={"recipe": name, "bench": bench.model_copy(update={"timings": timings, "speedups": speedups})}
    )


def _out(args: list[str], columns: int = 200) -> tuple[int, str, str]:
    """``workbench <args>`` in this process with COLUMNS set: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.MonkeyPatch.context() as env:
        env.setenv("COLUMNS", str(columns))
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Reports:
    project = tmp_path_factory.mktemp("cli")
    shutil.copy(ROOT / "task.py", project / "task.py")
    save_tiny_lstm(project)
    recipe = project / "toy.yaml"
    recipe.write_text(RECIPE)
    code, terminal, _ = _out(["run", str(recipe)], columns=80)
    assert code == 0, terminal
    first = project / "reports" / "toy"
    second = project / "reports" / "slower"
    shutil.copytree(first, second)
    run = _slower_reference(Run.load((first / "metrics.json").read_text()), "slower")
    (second / "metrics.json").write_text(run.dump())
    return Reports(first, second, recipe, terminal)


def _json(args: list[str]) -> dict:
    code, out, _ = _out(["compare", *args, "--format", "json"])
    assert code == 0
    return json.loads(out)


def test_compare_takes_ratios_of_ratios_and_says_what_each_figure_is_relative_to(reports):
    table = _json([str(reports.first), str(reports.second)])
    assert table["columns"] == ["row", "figure", "toy", "slower", "change toy -> slower"]
    cells = {(r[0], r[1]): r[2:] for r in table["rows"]}
    first, second = (Run.load((f / "metrics.json").read_text()) for f in (reports.first, reports.second))
    case = first.bench.headline
    for row in ("onnxruntime:export", "onnxruntime:quantize_dynamic"):
        before, after = first.bench.speedup(row, case).value, second.bench.speedup(row, case).value
        assert cells[row, "x PyTorch fp32"] == [f"{before:.2f}x", f"{after:.2f}x", f"x{FACTOR:.2f}"]  # not a difference
        assert cells[row, "latency ms"][-1] == "x1.00" and cells[row, "accuracy"][-1] == "+0.00 points"
    assert cells[REFERENCE, "latency ms"][-1] == f"x{FACTOR:.2f}" and cells[REFERENCE, "x PyTorch fp32"][-1] == "x1.00"
    notes = {note.split(":", 1)[0]: note for note in table["notes"]}
    for figure in {r[1] for r in table["rows"]}:
        assert figure in notes, f"no note says what {figure!r} is"
    assert "PyTorch fp32's median over the row's" in notes["x PyTorch fp32"]
    assert "exported fp32 file" in notes["of export"] and "PyTorch fp32" in notes["agreement"]
    assert "last / first" in notes["change"]


def test_compare_names_two_runs_of_one_recipe_apart(reports, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(reports.first, again)
    columns = _json([str(reports.first), str(again)])["columns"]
    assert (
        columns[2] != columns[3] and str(again) in columns[3] and columns[4] == f"change {columns[2]} -> {columns[3]}"
    )


def test_a_single_report_compares_with_nothing_and_says_so(reports):
    code, out, _ = _out(["compare", str(reports.first)])
    assert code == 0 and "one report: nothing to compare it with" in out and "change" not in out.split("\n- ")[0]
    table = _json([str(reports.first)])
    assert table["columns"] == ["row", "figure", "toy"] and all(len(r) == 3 for r in table["rows"])
    assert table["notes"][0] == "one report: nothing to compare it with, its figures are shown alone"


@pytest.mark.parametrize("what", ["recipe", "empty folder"])
def test_a_path_that_is_not_a_report_folder_is_one_line(reports, tmp_path, what):
    path = reports.recipe if what == "recipe" else tmp_path
    done = subprocess.run(
        [sys.executable, "-m", "workbench", "compare", str(path)],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: {path}") and "a report folder written by `workbench run`" in done.stderr


def test_every_format_parses(reports):
    folders = [str(reports.first), str(reports.second)]
    table = _json(folders)
    header, rows = table["columns"], table["rows"]
    assert len(rows) >= 10 and all(len(r) == len(header) for r in rows)
    _, text, _ = _out(["compare", *folders, "--format", "csv"])
    assert list(csv.reader(io.StringIO(text))) == [header, *rows]
    _, text, _ = _out(["compare", *folders, "--format", "md"])
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[1] == "|" + "|".join("---" for _ in header) + "|"
    assert [[c.strip() for c in line[2:-2].split(" | ")] for line in [lines[0], *lines[2:]]] == [header, *rows]
    assert all(f"- {note}" in text for note in table["notes"])


def _cut(text: str, words: set[str]) -> list[str]:
    """The words that appear whole on no line of ``text`` (cut across lines), and table rows (lines holding one of
    the words) wider than 80 columns."""
    lines = text.splitlines()
    wide = [f"{len(line)} columns: {line}" for line in lines if len(line) > 80 and set(line.split()) & words]
    return wide + sorted(w for w in words if not any(w in line.split() for line in lines))


def test_tables_keep_words_whole_at_80_columns(reports):
    folders = [str(reports.first), str(reports.second)]
    table = _json(folders)
    code, out, _ = _out(["compare", *folders], columns=80)
    assert code == 0
    words = {w for r in table["rows"] for cell in r for w in cell.split()}
    assert not _cut(out, words), _cut(out, words)

    export, quantized = reports.first / "export.onnx", reports.first / "quantize_dynamic.onnx"
    code, out, _ = _out(["bench", str(export), str(quantized), "--recipe", str(reports.recipe), "--budget", "0.02"], 80)
    assert code == 0
    names = {"pytorch", "fp32", "int8", "export.onnx", "quantize_dynamic.onnx"}
    assert not _cut(out, names), _cut(out, names) + [out]

    rows = {"onnxruntime:export", "onnxruntime:quantize_dynamic", "pytorch", "fp32"}
    assert not _cut(reports.terminal, rows), _cut(reports.terminal, rows) + [reports.terminal]


def test_every_subcommand_and_option_has_help_text():
    parser = _parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [f"command {c.dest}" for c in commands._choices_actions if not c.help]
    for name, sub in commands.choices.items():
        if not sub.description:
            missing.append(f"{name}: no description")
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert len(commands.choices) >= 6 and not missing, missing
    for action in parser._actions:
        assert isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help, action.dest
