from __future__ import annotations

import numpy as np
import pytest

from workbench.validate import compare, judge
from workbench.recipe import Accept

REFERENCE = np.array([[5.0, -5.0], [0.1, 0.2], [1.0, 0.0], [-2.0, 2.0]], dtype=np.float32)
LABELS = np.array([0, 1, 0, 0])  # the reference gets 3 of 4 right (the last is wrong)


def test_figures_are_computed_from_the_outputs():
    candidate = REFERENCE.copy()
    candidate[0, 0] += 1.4e-5
    candidate[2] = [0.0, 1.0]  # flips sample 2 from class 0 to class 1
    result = compare(candidate, REFERENCE, LABELS)
    assert result.samples == 4
    assert result.max_abs_error == pytest.approx(1.0, abs=1e-6)
    assert result.mean_abs_error == pytest.approx((1.4e-5 + 2.0) / 8, rel=1e-4)
    assert result.agreement == 0.75
    assert result.reference_accuracy == 0.75 and result.accuracy == 0.5
    assert result.accuracy_drop == pytest.approx(0.25)


def test_relative_tolerance_scales_with_the_reference():
    candidate = REFERENCE.copy()
    candidate[0, 0] += 1.4e-5  # at |reference| = 5: within 1e-5 + 1e-5 * 5, not within 1e-5 alone
    scaled = judge(compare(candidate, REFERENCE, LABELS, rtol=1e-5), Accept(max_abs_error=1e-5, rtol=1e-5))
    plain = judge(compare(candidate, REFERENCE, LABELS), Accept(max_abs_error=1e-5))
    assert scaled.passed and bool(scaled)
    assert not plain.passed and plain.failures == (f"max abs error {plain.comparison.max_abs_error:.3g} > limit 1e-05",)
    assert 1.3e-5 < plain.comparison.max_abs_error < 1.5e-5
    candidate[1, 0] += 2e-5  # at |reference| = 0.1 the relative term adds only 1e-6
    assert not judge(compare(candidate, REFERENCE, LABELS, rtol=1e-5), Accept(max_abs_error=1e-5, rtol=1e-5))


def test_every_miss_is_collected():
    candidate = REFERENCE[:, ::-1].copy()
    verdict = judge(
        compare(candidate, REFERENCE, LABELS), Accept(max_abs_error=0.1, min_agreement=0.99, max_accuracy_drop=0.005)
    )
    assert [f.split()[0] for f in verdict.failures] == ["max", "agreement", "accuracy"]
    assert "agreement 0.00% < limit 99.00%" in verdict.failures[1]
    assert verdict.model_dump()["passed"] is False and not verdict


def test_unset_thresholds_judge_nothing():
    assert judge(compare(REFERENCE[:, ::-1].copy(), REFERENCE, LABELS), Accept()).passed


def test_shape_mismatch_is_an_error():
    from workbench.errors import InputError

    with pytest.raises(InputError, match="differs from the reference"):
        compare(REFERENCE[:, :1], REFERENCE, LABELS)
