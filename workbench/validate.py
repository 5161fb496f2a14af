"""Run any runner over the evaluation set, compare its logits with the reference's, judge against thresholds.

Comparison returns numbers, not a bool; the verdict is a separate step with its limits printed beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

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
COMPARE_ROWS = 65536  # rows compared at a time
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
    parts = list(_outputs(runner, samples, feed, batch_size=batch_size, padded=padded, advance=advance))
    out = np.empty((len(samples), parts[0][1].shape[1]), dtype=np.float32)
    for indices, values in parts:
        out[indices] = values
    return out


def write_logits(
    runner: Runner,
    windows: Iterable[tuple[int, Sequence[Sample]]],
    total: int,
    feed: FeedSpec,
    path: Path,
    *,
    batch_size: int,
    padded: bool = False,
    advance: Advance | None = None,
    check: Callable[[int], None] | None = None,
) -> None:
    """``logits`` over a set read as windows ((first index, samples) each), written to the ``.npy`` file ``path``
    as they come: memory holds one window and one batch, not the set. ``check(classes)`` runs on the first batch."""
    out = LogitsFile(path, total, check)
    for start, samples in windows:
        for indices, values in _outputs(runner, samples, feed, batch_size=batch_size, padded=padded, advance=advance):
            out.put(start + indices, values)
    out.close()


class LogitsFile:
    """Logits [total, classes] written to a ``.npy`` file as they arrive, rows in any order: the file is made on the
    first put (``check(classes)`` runs then), so a pass never holds the set's outputs in memory."""

    def __init__(self, path: Path, total: int, check: Callable[[int], None] | None = None):
        self.path, self.total, self.check = path, total, check
        self._out: np.memmap | None = None

    def put(self, rows: np.ndarray | slice, values: np.ndarray) -> None:
        if self._out is None:
            if self.check:
                self.check(values.shape[1])
            shape = (self.total, values.shape[1])
            self._out = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32, shape=shape)
        self._out[rows] = values

    def close(self) -> None:
        if self._out is None:
            raise InputError("the evaluation set is empty")
        self._out.flush()
        self._out = None


def _outputs(
    runner: Runner, samples: Sequence[Sample], feed: FeedSpec, *, batch_size: int, padded: bool, advance: Advance | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions in ``samples``, the runner's first output) per batch."""
    groups = padded_batches(samples, max_batch=batch_size) if padded else batches(samples, max_batch=batch_size)
    for batch in groups:
        feeds = feed.feeds(batch.tokens, batch.mask)
        try:
            values = runner.first_output(feeds)
        except InputError:
            raise  # the PyTorch model failing on the declared inputs: the recipe does not fit it
        except Exception as exc:  # the engine's own error, kept as the row's failure
            shapes = ", ".join(f"{name} {list(array.shape)}" for name, array in feeds.items())
            raise RunFailed(failure_text(exc, f"{runner.name} failed on inputs {shapes}")) from None
        yield batch.indices, values
        if advance:
            advance(len(batch.indices))


def alone(runner: Runner, samples: Sequence[Sample], feed: FeedSpec) -> np.ndarray:
    """Logits of each sample run by itself (batch of one)."""
    return logits(runner, samples, feed, batch_size=1)


def batch_dependence(in_batch: np.ndarray, by_itself: np.ndarray) -> BatchDependence:
    diff = np.abs(in_batch.astype(np.float64) - by_itself.astype(np.float64))
    same = np.mean(in_batch.argmax(1) == by_itself.argmax(1))
    return BatchDependence(samples=len(in_batch), max_abs_diff=float(diff.max()), agreement=float(same))


def compare(candidate: np.ndarray, reference: np.ndarray, labels: np.ndarray, *, rtol: float = 0.0) -> Comparison:
    """Errors, agreement and accuracy of ``candidate`` against ``reference`` (arrays or ``.npy`` memory maps),
    accumulated over blocks of rows, so comparing a set of any size holds one block in memory."""
    if candidate.shape != reference.shape:
        raise InputError(f"output shape {candidate.shape} differs from the reference's {reference.shape}")
    # numpy's maximum, unlike Python's max, keeps a NaN: an output that is NaN must fail every limit
    max_abs = max_rel = np.float64(0.0)
    max_excess = np.float64(-np.inf)
    sum_abs = 0.0
    same = correct = ref_correct = 0
    for start in range(0, len(labels), COMPARE_ROWS):
        rows = slice(start, start + COMPARE_ROWS)
        ref = np.asarray(reference[rows], dtype=np.float64)
        cand = np.asarray(candidate[rows], dtype=np.float64)
        diff = np.abs(cand - ref)
        max_abs, sum_abs = np.maximum(max_abs, diff.max()), sum_abs + float(diff.sum())
        max_rel = np.maximum(max_rel, (diff / (np.abs(ref) + REL_EPSILON)).max())
        max_excess = np.maximum(max_excess, (diff - rtol * np.abs(ref)).max())
        top, ref_top = cand.argmax(axis=1), ref.argmax(axis=1)
        same += int(np.sum(top == ref_top))
        correct += int(np.sum(top == labels[rows]))
        ref_correct += int(np.sum(ref_top == labels[rows]))
    n = len(labels)
    return Comparison(
        samples=n,
        max_abs_error=float(max_abs),
        mean_abs_error=sum_abs / (n * candidate.shape[1]),
        max_rel_error=float(max_rel),
        rtol=rtol,
        max_excess=float(max_excess),
        agreement=same / n,
        accuracy=correct / n,
        reference_accuracy=ref_correct / n,
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
