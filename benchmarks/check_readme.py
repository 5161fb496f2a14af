"""Does the README say what the benchmark scripts just measured? One table of claims, one function.

Each benchmark script builds a dict of the figures it measured (figure name -> number) and, given
``--check-readme``, calls ``verify(figures)``: every claim in ``CLAIMS`` whose figure the script measured
is looked up in README.md and compared; each disagreement is printed, naming the claim, the README's
text and the measured value, and the script exits 1. Claims about figures the script did not measure
are left to the script that does (a claim that no script measures is never checked: keep names exact).

A claim is ``Claim(pattern, figure, ...)``:

- ``pattern``: a regular expression (``re.search``, case-sensitive, multi-line text) that finds the
  figure in the README. It captures either one number in a group named ``value``, or a range in two
  groups named ``low`` and ``high``. Anchor it on the words around the number, so that rewording the
  sentence makes the claim go missing (a failure) rather than silently match another number. Every match
  in the README is checked, so a figure repeated in two places must be right in both.
- ``figure``: the name of the measured figure, as the script names it (see each script's docstring).
- ``scale``: what one README unit is in the measured unit (``0.01`` for a README percentage of a figure
  measured as a fraction; ``1`` by default).
- ``bound``: ``"auto"`` (default), ``"at_most"`` or ``"at_least"``.
- ``tolerance``: relative slack added to every comparison below (``0.1`` = 10%; default 0).

How a README figure must be written to be checked (numbers may have thousands separators, ``2,000``,
and may be written ``1.4e-5``; units and words around them belong to the pattern, not the groups):

- A range, ``28-31 s`` (groups ``low``, ``high``): the measured value must lie in [28, 31], ends included.
  Write a range for anything measured with noise (timings, speed-ups).
- One number, ``1.4e-5`` or ``34.6 s`` (group ``value``) with ``bound="auto"``: the measured value,
  rounded to the digits written, must give that number: ``1.4e-5`` accepts [1.35e-5, 1.45e-5], ``2,000``
  accepts [1999.5, 2000.5]. Write only as many digits as the measurement is repeatable to.
- One number with ``bound="at_most"`` (README: "under 3 s", "at most 1.4e-5"): measured <= number;
  ``bound="at_least"`` ("over 3x"): measured >= number. No rounding slack is given for bounds.

A claim whose pattern matches nowhere in the README is a disagreement ("missing"), as is a match whose
groups do not parse as numbers.

    python benchmarks/check_readme.py   # lists the claims and the figure each one needs
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

README = Path(__file__).resolve().parent.parent / "README.md"


@dataclass(frozen=True)
class Claim:
    pattern: str
    figure: str
    bound: Literal["auto", "at_most", "at_least"] = "auto"
    tolerance: float = 0.0
    scale: float = 1.0


# The lead fills this in as the README's figures settle. Figure names are the keys each script measures:
#   exactness.py      "largest logit", "<row> max" / "<row> mean" / "<row> over 1e-5" for its four rows
#   speed_targets.py  the "target" column of its table, e.g. "int8 size as a share of fp32"
#   recipe_speed.py   "cold run (--force)", "unchanged rerun" (seconds), "<run> report total|validation|benchmarks"
#   engines.py        "<row> <column>" for each cell of its table, e.g. "onnxruntime:quantize_dynamic b1_l256 x fp32"
# Examples (not active):
#   Claim(r"onnxruntime's LSTM differs from PyTorch\s+by at most (?P<value>[\d.e-]+)",
#         "onnxruntime vs torch, batched max", bound="at_most"),
#   Claim(r"cold run with benchmarks (?P<low>[\d.]+)-(?P<high>[\d.]+) s", "cold run (--force)"),
#   Claim(r"\*\*Held-out accuracy: (?P<value>[\d.]+)%\*\*", "held-out accuracy", scale=0.01),
CLAIMS: tuple[Claim, ...] = (
    # recipe_speed.py
    Claim(r"cold run with benchmarks \(`--force`\) \| (?P<low>[\d.]+)-(?P<high>[\d.]+) s", "cold run (--force)"),
    Claim(
        r"unchanged rerun \(stages, checks and benchmarks cached\) \| (?P<low>[\d.]+)-(?P<high>[\d.]+) s",
        "unchanged rerun",
    ),
    Claim(r"costs (?P<low>[\d.]+)-(?P<high>[\d.]+) s of a cold run", "cold run (--force) report benchmarks"),
    # engines.py
    Claim(
        r"onnxruntime int8 \(`DynamicQuantizeLSTM`\) (?P<low>[\d.]+)-(?P<high>[\d.]+) ms",
        "onnxruntime:quantize_dynamic b1_l256 ms",
    ),
    Claim(r"the same file on OpenVINO (?P<low>[\d.]+)-(?P<high>[\d.]+) ms", "openvino:quantize_dynamic b1_l256 ms"),
    Claim(r"onnxruntime fp32 (?P<low>[\d.]+)-(?P<high>[\d.]+) ms", "onnxruntime:export b1_l256 ms"),
    Claim(r"OpenVINO f32 (?P<low>[\d.]+)-(?P<high>[\d.]+) ms", "openvino:export b1_l256 ms"),
    Claim(r"PyTorch fp32\s+(?P<low>[\d.]+)-(?P<high>[\d.]+) ms", "pytorch fp32 b1_l256 ms"),
    # speed_targets.py
    Claim(r">= 5x PyTorch fp32 \| (?P<low>[\d.]+)-(?P<high>[\d.]+)x", "onnx int8 vs pytorch fp32, b1 l256"),
    Claim(r">= 3x PyTorch int8 \| (?P<low>[\d.]+)-(?P<high>[\d.]+)x", "onnx int8 vs pytorch int8, b1 l256"),
    Claim(
        r">= 3x PyTorch fp32 throughput \| (?P<low>[\d.]+)-(?P<high>[\d.]+)x",
        "onnx int8 throughput vs pytorch fp32, b64 l256",
    ),
    Claim(r"int8 size <= 26% of fp32 \| (?P<value>[\d.]+)%", "int8 size as a share of fp32", scale=0.01),
    Claim(r"\| (?P<value>[\d.]+) points drop \|", "accuracy drop vs pytorch fp32, points"),
    # scale.py
    Claim(r"peak RSS\s+(?P<low>[\d,]+)-(?P<high>[\d,]+) MB at 2,000 samples", "scale peak RSS MB at 2000"),
    Claim(r"(?P<low>[\d,]+)-(?P<high>[\d,]+) MB at 32,000 samples", "scale peak RSS MB at 32000"),
    Claim(r"32,000 over 2,000: (?P<low>[\d.]+)-(?P<high>[\d.]+)x", "scale peak RSS largest / smallest"),
    Claim(r"added 1,000 samples cost (?P<low>[\d.]+)-(?P<high>[\d.]+) s", "scale marginal seconds per 1k samples, least"),
    Claim(r"added 1,000 samples cost (?P<low>[\d.]+)-(?P<high>[\d.]+) s", "scale marginal seconds per 1k samples, most"),
    Claim(r"that cost varies by\s+at most (?P<value>[\d.]+)x", "scale marginal cost largest / smallest", bound="at_most"),
    # exactness.py
    Claim(
        r"onnxruntime's LSTM differs from PyTorch by\s+at\s+most\s+(?P<value>[\d.e-]+)",
        "onnxruntime vs torch, batched max",
    ),
)


def _number(text: str) -> Decimal:
    """A README number as written: ``2,000`` -> 2000, ``1.4e-5`` kept exact (its digits matter)."""
    try:
        value = Decimal(text.replace(",", "").strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _half_unit(written: Decimal) -> Decimal:
    """Half a unit of the last digit written: 34.6 -> 0.05, 1.4e-5 -> 5e-7, 2000 -> 0.5."""
    exponent = written.as_tuple().exponent
    assert isinstance(exponent, int), written  # _number admits finite numbers only
    return Decimal(5).scaleb(exponent - 1)


def _judge(claim: Claim, match: re.Match[str], measured: float) -> str | None:
    """None when the README text agrees with ``measured``, else what is wrong."""
    groups = match.groupdict()
    slack = claim.tolerance
    try:
        if groups.get("low") is not None and groups.get("high") is not None:
            low, high = (float(_number(groups[g])) * claim.scale for g in ("low", "high"))
            ok = low * (1 - slack) <= measured <= high * (1 + slack)
            wanted = f"in [{low:g}, {high:g}]"
        elif groups.get("value") is not None:
            written = _number(groups["value"])
            value = float(written) * claim.scale
            if claim.bound == "at_most":
                ok, wanted = measured <= value * (1 + slack), f"<= {value:g}"
            elif claim.bound == "at_least":
                ok, wanted = measured >= value * (1 - slack), f">= {value:g}"
            else:
                half = float(_half_unit(written)) * abs(claim.scale) + abs(value) * slack
                ok, wanted = abs(measured - value) <= half, f"in [{value - half:g}, {value + half:g}] (as written)"
        else:
            return f"pattern {claim.pattern!r} matched {match.group(0)!r} but captured no 'value' or 'low'/'high'"
    except ValueError as exc:
        return f"README {match.group(0)!r}: {exc}"
    return None if ok else f"README says {match.group(0)!r}, measured {measured:.4g}, wanted {wanted}"


def check(readme: str, measured: Mapping[str, float], claims: Sequence[Claim] = CLAIMS) -> list[str]:
    """Every disagreement between ``readme`` and the ``measured`` figures, one line each (empty: all agree).

    Only claims whose figure is in ``measured`` are checked."""
    problems = []
    for claim in claims:
        if claim.figure not in measured:
            continue
        matches = list(re.finditer(claim.pattern, readme, re.MULTILINE))
        if not matches:
            problems.append(f"{claim.figure}: missing from the README (no match for {claim.pattern!r})")
        for match in matches:
            problem = _judge(claim, match, float(measured[claim.figure]))
            if problem:
                problems.append(f"{claim.figure}: {problem}")
    return problems


def verify(measured: Mapping[str, float], readme: Path = README, claims: Sequence[Claim] = CLAIMS) -> int:
    """Print the outcome of ``check`` on the README file; 0 when it agrees, 1 naming each disagreement."""
    relevant = [c for c in claims if c.figure in measured]
    problems = check(readme.read_text(encoding="utf-8"), measured, relevant)
    if not relevant:
        print(f"\nREADME check: no claim in benchmarks/check_readme.py is about these {len(measured)} figures")
        return 0
    if not problems:
        print(f"\nREADME check: {len(relevant)} claims agree with the measured figures")
        return 0
    print(f"\nREADME check: {len(problems)} disagreements with {readme.name}:")
    for problem in problems:
        print(f"  {problem}")
    return 1


if __name__ == "__main__":
    for c in CLAIMS:
        print(f"{c.figure!r:<50} {c.bound:<9} tolerance {c.tolerance:g}  {c.pattern}")
    print(f"{len(CLAIMS)} claims")
    sys.exit(0)
