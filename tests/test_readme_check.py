"""benchmarks/check_readme.py: README figures compared with measured ones (in range passes, else a named failure)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parent.parent / "benchmarks" / "check_readme.py"
_spec = importlib.util.spec_from_file_location("check_readme", _path)
check_readme = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_readme", check_readme)  # dataclasses look their module up
_spec.loader.exec_module(check_readme)
Claim, check = check_readme.Claim, check_readme.check

README = """# demo

Speed: a cold run takes 28-31 s on 2 cores; an unchanged rerun takes under 3 s.
onnxruntime differs from PyTorch by 1.4e-5 at most, on 2,000 samples.
**Held-out accuracy: 99.60%**
"""

CLAIMS = (
    Claim(r"cold run takes (?P<low>[\d.]+)-(?P<high>[\d.]+) s", "cold"),
    Claim(r"unchanged rerun takes under (?P<value>[\d.]+) s", "rerun", bound="at_most"),
    Claim(r"from PyTorch by (?P<value>[\d.e-]+) at most", "max diff"),
    Claim(r"on (?P<value>[\d,]+) samples", "samples"),
    Claim(r"Held-out accuracy: (?P<value>[\d.]+)%", "accuracy", scale=0.01),
)


def test_figures_in_range_pass():
    measured = {"cold": 29.2, "rerun": 2.4, "max diff": 1.44e-5, "samples": 2000, "accuracy": 0.99604}
    assert check(README, measured, CLAIMS) == []


@pytest.mark.parametrize("cold", [28.0, 31.0])
def test_range_ends_are_included(cold):
    assert check(README, {"cold": cold}, CLAIMS) == []


@pytest.mark.parametrize(
    ("figure", "value"),
    [("cold", 31.2), ("cold", 27.9), ("rerun", 3.01), ("max diff", 1.46e-5), ("samples", 2001), ("accuracy", 0.9955)],
)
def test_figure_out_of_range_fails_naming_it(figure, value):
    problems = check(README, {figure: value}, CLAIMS)
    assert len(problems) == 1
    assert problems[0].startswith(f"{figure}: README says ")
    assert f"measured {value:.4g}" in problems[0]


def test_tolerance_widens_a_range():
    loose = (Claim(r"cold run takes (?P<low>[\d.]+)-(?P<high>[\d.]+) s", "cold", tolerance=0.05),)
    assert check(README, {"cold": 32.0}, loose) == []
    assert len(check(README, {"cold": 33.0}, loose)) == 1


def test_missing_figure_fails():
    claims = (Claim(r"cached rerun with --no-bench (?P<value>[\d.]+) s", "no-bench rerun"),)
    problems = check(README, {"no-bench rerun": 2.2}, claims)
    assert len(problems) == 1
    assert "no-bench rerun: missing from the README" in problems[0]


def test_each_match_is_checked():
    text = README + "\nAgain: a cold run takes 40-45 s.\n"
    problems = check(text, {"cold": 29.0}, CLAIMS)
    assert problems == ["cold: README says 'cold run takes 40-45 s', measured 29, wanted in [40, 45]"]


def test_claims_on_figures_not_measured_are_left_alone():
    assert check("nothing here", {"something else": 1.0}, CLAIMS) == []


def test_verify_exits_1_naming_each_disagreement(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert check_readme.verify({"cold": 29.0, "rerun": 2.0}, readme, CLAIMS) == 0
    assert check_readme.verify({"cold": 35.0, "rerun": 4.0}, readme, CLAIMS) == 1
    out = capsys.readouterr().out
    assert "2 disagreements" in out and "cold: README says" in out and "rerun: README says" in out


def test_every_claim_of_the_scripts_finds_its_figure_in_the_readme():
    """Rewording the README around a figure must not silently drop it from the scripts' checks."""
    import re

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [c.figure for c in check_readme.CLAIMS if not re.search(c.pattern, text)]
    assert not missing and len(check_readme.CLAIMS) >= 14, missing
