"""Session tuning: try a small grid of onnxruntime session options on one artifact, keep the fastest
configuration whose outputs are bit-identical to the default one, and save it beside the artifact.

Inference code loads it with ``tuned_session(path)`` (an onnxruntime runner built from the saved options).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench import data
from workbench.runtimes import Runner, row_name
from workbench.runtimes import onnxruntime as ort_engine
from workbench.store.files import write_atomic
from workbench.timing import measure


ENGINE = "onnxruntime"  # session options are onnxruntime's


@dataclass(frozen=True)
class Trial:
    options: dict[str, Any]
    median_ms: float
    identical: bool


@dataclass(frozen=True)
class Tuning:
    row: str  # the runner tuned, e.g. onnxruntime:quantize_dynamic
    stage: str
    case: str
    default: Trial
    best: Trial
    trials: tuple[Trial, ...]

    @property
    def gain(self) -> float:
        return self.default.median_ms / self.best.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gain": self.gain}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tuning:
        trial = lambda t: Trial(t["options"], t["median_ms"], t["identical"])  # noqa: E731
        return cls(
            d["row"], d["stage"], d["case"], trial(d["default"]), trial(d["best"]), tuple(trial(t) for t in d["trials"])
        )


def grid(threads: int) -> list[dict[str, Any]]:
    """The default configuration first, then its variations."""
    return [
        {"intra_op_num_threads": t, "graph_optimization_level": level, "execution_mode": mode}
        for t in dict.fromkeys((threads, 1))
        for level in ("ORT_ENABLE_ALL", "ORT_ENABLE_BASIC")
        for mode in ("ORT_SEQUENTIAL", "ORT_PARALLEL")
    ]


def choose(trials: Sequence[Trial]) -> Trial:
    """The fastest trial whose outputs are identical to the default's (the first trial)."""
    return min((t for t in trials if t.identical), key=lambda t: t.median_ms)


def identical_to_first(
    runners: Sequence[Runner], model_inputs: Sequence[data.InputLike], *, vocab_size: int
) -> list[bool]:
    """Whether each runner's outputs equal the first one's, bit for bit, on probes of several shapes."""
    probes = [
        measure.inputs(measure.Case("probe", b, n), model_inputs, vocab_size=vocab_size, seed=1)
        for b, n in ((1, 7), (3, 64), (2, 300))
    ]
    outputs = [[r.first_output(feeds) for feeds in probes] for r in runners]
    return [all(np.array_equal(a, b) for a, b in zip(out, outputs[0])) for out in outputs]


def tune(
    path: Path,
    stage: str,
    case: measure.Case,
    model_inputs: Sequence[data.InputLike],
    *,
    threads: int,
    vocab_size: int,
    budget_s: float,
    configs: Sequence[dict[str, Any]] | None = None,
) -> Tuning:
    """Time every configuration round-robin on ``case``; outputs are compared on probes of several shapes."""
    configs = list(configs or grid(threads))
    runners = []
    for i, config in enumerate(configs):
        options = {k: v for k, v in config.items() if k != "intra_op_num_threads"}
        runner = ort_engine.load_file(path, config["intra_op_num_threads"], options, name=f"config {i}")
        runners.append(runner)
    identical = identical_to_first(runners, model_inputs, vocab_size=vocab_size)
    feeds = measure.inputs(case, model_inputs, vocab_size=vocab_size)
    timings = measure.measure(runners, case, feeds, budget_s=budget_s)
    trials = tuple(Trial(config, t.median_ms, same) for config, t, same in zip(configs, timings, identical))
    return Tuning(row_name(ENGINE, stage), stage, case.name, trials[0], choose(trials), trials)


def save(tuning: Tuning, artifact: Path) -> Path:
    """Write the chosen options as ``<artifact>.session.json``."""
    target = artifact.with_name(artifact.name + ".session.json")
    text = json.dumps({"session_options": tuning.best.options, "measured": tuning.to_dict()}, indent=2) + "\n"
    return write_atomic(target, lambda tmp: tmp.write_text(text))


def tuned_session(path: str | Path) -> ort_engine.OnnxRuntimeRunner:
    """An onnxruntime runner for ``path`` with the options saved beside it, or defaults if there are none."""
    path = Path(path)
    saved = path.with_name(path.name + ".session.json")
    options = json.loads(saved.read_text())["session_options"] if saved.is_file() else {}
    return ort_engine.load_file(path, options.pop("intra_op_num_threads", 0), options)
