"""Latency and throughput of ONNX files and torch references: same inputs, same threads, one process.

Contenders are timed in turns of short blocks, so the machine's noise falls on all of them alike and
every ratio comes from the same stretch of time. Warm-up calls are not counted; turns go on until every
contender's median is stable or the time budget is spent.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

WARMUP = 2
MIN_RUNS = 7
BLOCKS = 3  # at least three turns each, so slow drifts of the machine fall on every contender
MIN_BLOCK_RUNS = 3
MAX_BLOCK_RUNS = 10_000
SETTLE_S = 0.02  # pause between blocks: lets the last contender's spinning worker threads go to sleep
STABLE_WITHIN = 0.02  # the median of all runs and of the later half agree within 2%


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    length: int


@dataclass(frozen=True)
class Contender:
    name: str
    call: Callable[[np.ndarray], Any]  # takes ids laid out as the model wants them


@dataclass(frozen=True)
class Timing:
    contender: str
    case: str
    batch: int
    length: int
    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float
    stable: bool

    @property
    def samples_per_s(self) -> float:
        return self.batch / (self.median_ms / 1000)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "samples_per_s": self.samples_per_s}


def torch_fp32(module: Any, threads: int) -> Contender:
    import torch

    torch.set_num_threads(threads)

    def call(ids: np.ndarray) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(ids))

    return Contender("pytorch fp32", call)


def torch_int8(module: Any, threads: int) -> Contender:
    """torch's own dynamic int8 quantization of LSTM and Linear weights (the PyTorch int8 reference)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in 2.13 but still works
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(module), {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8
        )
    contender = torch_fp32(quantized, threads)
    return Contender("pytorch int8", contender.call)


def onnx_session(path: Path, threads: int, options: dict[str, Any] | None = None) -> Any:
    """An onnxruntime CPU session with explicit threads and, optionally, tuned options (see tune.py)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    for name, value in (options or {}).items():
        if name == "graph_optimization_level":
            value = getattr(ort.GraphOptimizationLevel, value)
        elif name == "execution_mode":
            value = getattr(ort.ExecutionMode, value)
        setattr(opts, name, value)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def checked_session(path: Path, threads: int, *, input_name: str | None = None) -> Any:
    """A session for a file from outside: load errors and inputs other than one int64 tensor of token ids
    (named ``input_name``, when given) are InputErrors."""
    from workbench.errors import InputError

    try:
        session = onnx_session(path, threads)
    except Exception as exc:  # onnxruntime's untyped load errors
        raise InputError(f"{path}: onnxruntime cannot load this model: {str(exc).splitlines()[0]}") from None
    found = [(value.name, value.type) for value in session.get_inputs()]
    if len(found) != 1 or found[0][1] != "tensor(int64)" or (input_name and found[0][0] != input_name):
        wanted = f"one int64 input named {input_name!r}" if input_name else "one int64 input of token ids"
        raise InputError(f"{path}: inputs {found} do not match the recipe: expected {wanted}")
    return session


def onnx_file(name: str, path: Path, threads: int, options: dict[str, Any] | None = None) -> Contender:
    session = onnx_session(path, threads, options)
    input_name = session.get_inputs()[0].name
    return Contender(name, lambda ids: session.run(None, {input_name: ids}))


def inputs(case: Case, *, vocab_size: int, batch_first: bool, seed: int = 0) -> np.ndarray:
    ids = np.random.default_rng([seed, case.batch, case.length]).integers(0, vocab_size, size=(case.length, case.batch))
    return np.ascontiguousarray(ids.T) if batch_first else ids


def measure(contenders: Sequence[Contender], case: Case, ids: np.ndarray, *, budget_s: float) -> list[Timing]:
    """Time every contender on ``ids`` in turns of short blocks until all medians are stable or the budget is spent.

    Each block starts with a short pause and one untimed call, which absorb what the previous contender
    left behind (onnxruntime's and OpenMP's spinning worker threads, cold caches).
    """
    for contender in contenders:
        for _ in range(WARMUP):
            contender.call(ids)
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    block_s = budget_s / (BLOCKS * len(contenders))
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while True:
        for contender in contenders:
            time.sleep(SETTLE_S)
            contender.call(ids)
            runs = samples[contender.name]
            block_end = time.perf_counter() + block_s
            for _ in range(MAX_BLOCK_RUNS):
                start = time.perf_counter()
                contender.call(ids)
                end = time.perf_counter()
                runs.append(end - start)
                if end >= block_end and len(runs) >= (rounds + 1) * MIN_BLOCK_RUNS:
                    break
        rounds += 1
        stable = all(_stable(s) for s in samples.values())
        if rounds >= BLOCKS and (stable or time.perf_counter() > deadline):
            break
    return [_timing(c.name, case, samples[c.name], _stable(samples[c.name])) for c in contenders]


def _stable(runs: list[float]) -> bool:
    if len(runs) < MIN_RUNS:
        return False
    whole, later = np.median(runs), np.median(runs[len(runs) // 2 :])
    return bool(abs(later - whole) <= STABLE_WITHIN * whole)


def _timing(name: str, case: Case, runs: list[float], stable: bool) -> Timing:
    ms = np.array(runs) * 1000
    q1, q3 = np.percentile(ms, [25, 75])
    return Timing(
        name,
        case.name,
        case.batch,
        case.length,
        len(ms),
        float(np.median(ms)),
        float(np.percentile(ms, 90)),
        float(ms.min()),
        float(ms.max()),
        float(q3 - q1),
        stable,
    )


def run_cases(
    contenders: Sequence[Contender],
    cases: Sequence[Case],
    *,
    vocab_size: int,
    batch_first: bool,
    budget_s: float,
    on_case: Callable[[Case], None] | None = None,
) -> list[Timing]:
    timings = []
    for case in cases:
        if on_case:
            on_case(case)
        timings += measure(
            contenders, case, inputs(case, vocab_size=vocab_size, batch_first=batch_first), budget_s=budget_s
        )
    return timings


def speedups(timings: Sequence[Timing], baseline: str = "pytorch fp32") -> dict[tuple[str, str], float]:
    """(contender, case) -> baseline median / contender median, from timings of one run only."""
    base = {t.case: t.median_ms for t in timings if t.contender == baseline}
    return {(t.contender, t.case): base[t.case] / t.median_ms for t in timings if t.case in base}
