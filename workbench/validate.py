"""Run any runner over the evaluation set, compare its logits with the reference's, judge against thresholds.

Comparison returns numbers, not a bool; the verdict is a separate step with its limits printed beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from workbench.data import Sample, batches, padded_batches
from workbench.feeds import FeedSpec
from workbench.errors import InputError, failure_text
from workbench.precision import Accept
from workbench.results import BatchDependence, Check, Comparison
from workbench.runtimes.base import Runner

class RunFailed(Exception):
    """An engine failed while running an artifact on the evaluation set; the message says where and why."""


REL_EPSILON = 1e-6  # relative error = |candidate - reference| / (|reference| + REL_EPSILON)
Advance = Callable[[int], None]


def logits(
    runner: Runner,
    samples: Sequence[Sample],
    feed: FeedSpec,
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
        feeds = feed.feeds(batch.tokens, batch.mask)
        try:
            parts.append((batch.indices, runner.first_output(feeds)))
        except InputError:
            raise  # the PyTorch model failing on the declared inputs: the recipe does not fit it
        except Exception as exc:  # the engine's own error, kept as the row's failure
            shapes = ", ".join(f"{name} {list(array.shape)}" for name, array in feeds.items())
            raise RunFailed(failure_text(exc, f"{runner.name} failed on inputs {shapes}")) from None
        if advance:
            advance(len(batch.indices))
    out = np.empty((len(samples), parts[0][1].shape[1]), dtype=np.float32)
    for indices, values in parts:
        out[indices] = values
    return out


def alone(runner: Runner, samples: Sequence[Sample], feed: FeedSpec) -> np.ndarray:
    """Logits of each sample run by itself (batch of one)."""
    return logits(runner, samples, feed, batch_size=1)


def batch_dependence(in_batch: np.ndarray, by_itself: np.ndarray) -> BatchDependence:
    diff = np.abs(in_batch.astype(np.float64) - by_itself.astype(np.float64))
    same = np.mean(in_batch.argmax(1) == by_itself.argmax(1))
    return BatchDependence(samples=len(in_batch), max_abs_diff=float(diff.max()), agreement=float(same))


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


def judge(comparison: Comparison, accept: Accept) -> Check:
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
    return Check(comparison=comparison, accept=accept, failures=tuple(failures))
