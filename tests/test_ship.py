"""Ship: on the zoo BERT's search recipe (less data, shorter timing), each target's choice is checked against the
run's own metrics.json: within the budget, and no other candidate within it faster beyond its interval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.decide import ship
from workbench.recipe import BudgetSpec, load
from workbench.results import Case, Run
from workbench.timing import stats

ROOT = Path(__file__).resolve().parent.parent
SMALLER = {
    "  synthetic: {size: 2000, seed: 1234, min_len: 8, max_len: 256}": "  synthetic: {size: 200, seed: 1234, min_len: 8, max_len: 64}",
    "  max_trials: 6": "  max_trials: 2",
}
TIMING = (
    "bench: {budget_seconds: 0.3, latency_lengths: [32], throughput: {batch: 16, length: 128}, chart_lengths: [16, 32], "
    "tune: false}\nlayer_errors: {samples: 16}\n"
)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> tuple[Path, Run, int]:
    """recipes/bert_search.yaml with 200 samples, two trials and 0.3 s per timing case, run once."""
    folder = tmp_path_factory.mktemp("bert_search")
    text = (ROOT / "recipes" / "bert_search.yaml").read_text()
    for old, new in SMALLER.items():
        assert old in text, old
        text = text.replace(old, new)
    text = text.replace("root: ..\n", f"root: {ROOT}\nreports: {folder}/reports\ncache: {folder}/cache\n") + TIMING
    path = folder / "bert_search.yaml"
    path.write_text(text)
    code = main(["run", str(path), "--quiet"])
    return folder, Run.load((folder / "reports" / "bert_search" / "metrics.json").read_text()), code


def test_each_target_ships_the_smallest_candidate_within_budget_the_fastest_does_not_beat(bert):
    folder, run, code = bert
    assert code == 0 and run.decision is not None and run.bench is not None
    budget = run.decision.budget
    assert [str(c.target) for c in run.decision.choices] == ["onnxruntime b1 l128", "onnxruntime b16 l128"]
    rows = {c.row for s in run.stages for c in s.checks} | {f.row for t in run.decision.trials for f in t.engines}
    for choice in run.decision.choices:
        case = Case(batch=choice.target.batch, length=choice.target.length)
        assert {c.row for c in choice.candidates} == rows  # every stage's row and every trial's is weighed
        chosen = choice.chosen
        assert chosen is not None and choice.shipped == chosen.row
        assert chosen.accuracy_drop <= budget.max_accuracy_drop and chosen.agreement >= budget.min_agreement
        mine = run.bench.timing(chosen.row, case)
        assert mine is not None and chosen.median_ms == mine.median_ms
        # the rule, from the recorded figures whatever the noise: the leader is the fastest median within the
        # budget; a candidate it beats beyond the interval (2% margin) lost as slower; of the rest, the smallest ships
        timed = [c for c in choice.candidates if c.within_budget and c.median_ms is not None]
        leader = min(timed, key=lambda c: c.median_ms)
        blocks = {c.row: run.bench.timing(c.row, case).block_medians_ms for c in timed}
        for other in timed:
            lead = stats.ratio_interval(blocks[other.row], blocks[leader.row])  # >1: the leader is faster
            beaten = lead.estimate > 1 and stats.distinguishable(lead)
            if other is chosen:
                assert not beaten, f"{chosen.row} shipped although {leader.row} is {lead} faster at {case}"
            elif beaten:
                assert other.outcome == "slower" and leader.row in other.why, (other.row, other.outcome, str(lead))
            else:
                assert other.outcome == "indistinguishable and bigger", (other.row, other.outcome, str(lead))
                assert other.bytes >= chosen.bytes
        assert (folder / "reports" / "bert_search" / choice.file).is_file()


def test_the_trials_are_static_first_and_over_budget_ones_lose_for_that(bert):
    _, run, _ = bert
    first = run.decision.trials[0]
    assert first.stage == "quantize_static" and first.params["quant_format"] == "qdq"
    for choice in run.decision.choices:
        for c in choice.candidates:
            figures = (c.accuracy_drop, c.agreement)
            assert (c.outcome == "over budget") == (c.accuracy_drop is not None and not (
                figures[0] <= run.decision.budget.max_accuracy_drop + 1e-12 and figures[1] >= run.decision.budget.min_agreement
            ))


def test_a_new_budget_decides_again_from_the_same_figures(bert):
    """decide() is pure: the same run under a zero-tolerance budget ships only what loses nothing."""
    folder, run, _ = bert
    strict = BudgetSpec(max_accuracy_drop=0.0, min_agreement=1.0)
    recipe = load(folder / "bert_search.yaml")
    again = ship.decide(run, ship.targets(recipe, threads=2), strict)
    for choice in again.choices:
        assert choice.chosen is not None and choice.chosen.agreement == 1.0 and choice.chosen.accuracy_drop <= 0
        assert all(c.outcome == "over budget" for c in choice.candidates if c.agreement is not None and c.agreement < 1)


def test_a_target_on_an_engine_the_recipe_does_not_run_is_refused(tmp_path):
    text = (ROOT / "recipes" / "bert_search.yaml").read_text().replace("{engine: onnxruntime, batch: 1", "{engine: openvino, batch: 1")
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("root: ..", f"root: {ROOT}"))
    with pytest.raises(Exception, match=r"target\[0\]\.engine: 'openvino' is not among the recipe's runtimes"):
        ship.targets(load(path), threads=2)


def test_the_session_settings_load_with_load_tuned(bert):
    from workbench.runtimes import load_tuned

    folder, run, _ = bert
    choice = run.decision.choices[0]
    shipped = folder / "reports" / "bert_search" / choice.file
    session = json.loads(Path(f"{shipped}.session.json").read_text())
    assert session["case"] == {"batch": 1, "length": 128} and session["row"] == choice.shipped
    runner = load_tuned(shipped, threads=session["threads"])
    assert runner is not None
