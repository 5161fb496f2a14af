"""Run any runner over the evaluation set, compare its logits with the reference's, judge against thresholds.

Comparison returns numbers, not a bool; the verdict is a separate step with its limits printed beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from workbench.data import InputLike, Sample, batches, feeds, padded_batches
from workbench.errors import InputError
from workbench.precision import Accept
from workbench.runtimes.base import Runner

REL_EPSILON = 1e-6  # relative error = |candidate - reference| / (|reference| + REL_EPSILON)
Advance = Callable[[int], None]


def logits(
    runner: Runner,
    samples: Sequence[Sample],
    inputs: Sequence[InputLike],
    *,
    batch_size: int,
    padded: bool = False,
    advance: Advance | None = None,
) -> np.ndarray:
    """Logits [N, classes] of ``runner`` on ``samples``, in data set order.

    Equal-length batches by default (no padding, so batching changes nothing in fp32); ``padded``:
    mixed-length batches padded to their longest sample with the mask set, as a serving batcher sends them.
    """
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    groups = padded_batches(samples, max_batch=batch_size) if padded else batches(samples, max_batch=batch_size)
    for batch in groups:
        parts.append((batch.indices, runner.first_output(feeds(batch.tokens, batch.mask, inputs))))
        if advance:
            advance(len(batch.indices))
    out = np.empty((len(samples), parts[0][1].shape[1]), dtype=np.float32)
    for indices, values in parts:
        out[indices] = values
    return out


def alone(runner: Runner, samples: Sequence[Sample], inputs: Sequence[InputLike]) -> np.ndarray:
    """Logits of each sample run by itself (batch of one)."""
    return logits(runner, samples, inputs, batch_size=1)


@dataclass(frozen=True)
class BatchDependence:
    """How much a sample's int8 output moves with the other samples in its batch (dynamic quantization
    scales activations per batch): each sample alone against the same sample inside its batch."""

    samples: int
    max_abs_diff: float
    agreement: float


def batch_dependence(in_batch: np.ndarray, by_itself: np.ndarray) -> BatchDependence:
    diff = np.abs(in_batch.astype(np.float64) - by_itself.astype(np.float64))
    same = np.mean(in_batch.argmax(1) == by_itself.argmax(1))
    return BatchDependence(len(in_batch), float(diff.max()), float(same))


@dataclass(frozen=True)
class Comparison:
    samples: int
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float
    rtol: float
    max_excess: float  # max(|diff| - rtol * |reference|): passes an absolute limit L when <= L
    agreement: float  # share of samples whose top-1 class equals the reference's
    accuracy: float
    reference_accuracy: float

    @property
    def accuracy_drop(self) -> float:
        return self.reference_accuracy - self.accuracy


def compare(candidate: np.ndarray, reference: np.ndarray, labels: np.ndarray, *, rtol: float = 0.0) -> Comparison:
    if candidate.shape != reference.shape:
        raise InputError(f"output shape {candidate.shape} differs from the reference's {reference.shape}")
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    rel = diff / (np.abs(reference.astype(np.float64)) + REL_EPSILON)
    top, ref_top = candidate.argmax(axis=1), reference.argmax(axis=1)
    return Comparison(
        samples=len(labels),
        max_abs_error=float(diff.max()),
        mean_abs_error=float(diff.mean()),
        max_rel_error=float(rel.max()),
        rtol=rtol,
        max_excess=float((diff - rtol * np.abs(reference.astype(np.float64))).max()),
        agreement=float(np.mean(top == ref_top)),
        accuracy=float(np.mean(top == labels)),
        reference_accuracy=float(np.mean(ref_top == labels)),
    )


@dataclass(frozen=True)
class StageCheck:
    comparison: Comparison
    accept: Accept
    failures: tuple[str, ...]  # each: the figure, the limit

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            **asdict(self.comparison),
            "accuracy_drop": self.comparison.accuracy_drop,
            "accept": self.accept.model_dump(),
            "failures": list(self.failures),
        }


def judge(comparison: Comparison, accept: Accept) -> StageCheck:
    """Every threshold that is set, checked; every miss collected (not just the first)."""
    failures = []
    if accept.max_abs_error is not None:
        if comparison.rtol != (accept.rtol or 0.0):
            raise ValueError(f"compared with rtol {comparison.rtol}, judged with {accept.rtol}")
        if not comparison.max_excess <= accept.max_abs_error:
            scaled = f" + {comparison.rtol:g} x |reference|" if comparison.rtol else ""
            failures.append(f"max abs error {comparison.max_abs_error:.3g} > limit {accept.max_abs_error:g}{scaled}")
    if accept.min_agreement is not None and not comparison.agreement >= accept.min_agreement:
        failures.append(f"agreement {comparison.agreement:.2%} < limit {accept.min_agreement:.2%}")
    if accept.max_accuracy_drop is not None and not comparison.accuracy_drop <= accept.max_accuracy_drop + 1e-12:
        failures.append(
            f"accuracy drop {100 * comparison.accuracy_drop:.2f} points > limit {100 * accept.max_accuracy_drop:.2f}"
        )
    return StageCheck(comparison, accept, tuple(failures))
