"""Run an artifact and the torch reference on the same batches, compare, and judge against thresholds.

Comparison returns numbers, not a bool; the verdict is a separate step with its limits printed beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.data import Sample, batches
from workbench.errors import InputError
from workbench.recipe import Accept

REL_EPSILON = 1e-6  # relative error = |candidate - reference| / (|reference| + REL_EPSILON)
Advance = Callable[[int], None]


def run_onnx(
    path: Path,
    samples: Sequence[Sample],
    *,
    input_name: str,
    batch_first: bool,
    batch_size: int,
    threads: int,
    advance: Advance | None = None,
) -> np.ndarray:
    """Logits [N, classes] of the ONNX file on ``samples``, in data set order."""
    from workbench.bench import checked_session

    session = checked_session(path, threads, input_name=input_name)
    return _collect(samples, batch_size, batch_first, advance, lambda ids: session.run(None, {input_name: ids})[0])


def run_torch(
    module: Any,
    samples: Sequence[Sample],
    *,
    batch_first: bool,
    batch_size: int,
    threads: int,
    advance: Advance | None = None,
) -> np.ndarray:
    """Logits [N, classes] of the eval-mode torch module on ``samples``, in data set order."""
    import torch

    torch.set_num_threads(threads)
    with torch.inference_mode():
        return _collect(samples, batch_size, batch_first, advance, lambda ids: module(torch.from_numpy(ids)).numpy())


def _collect(
    samples: Sequence[Sample],
    batch_size: int,
    batch_first: bool,
    advance: Advance | None,
    forward: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for batch in batches(samples, max_batch=batch_size):
        ids = np.ascontiguousarray(batch.ids.T) if batch_first else batch.ids
        parts.append((batch.indices, np.asarray(forward(ids), dtype=np.float32)))
        if advance:
            advance(len(batch.indices))
    logits = np.empty((len(samples), parts[0][1].shape[1]), dtype=np.float32)
    for indices, values in parts:
        logits[indices] = values
    return logits


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
