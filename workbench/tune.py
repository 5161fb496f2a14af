"""Session tuning: try a small grid of onnxruntime session options on one artifact, keep the fastest
configuration whose outputs are bit-identical to the default one, and save it beside the artifact.

Inference code loads it with ``tuned_session(path)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench import bench


@dataclass(frozen=True)
class Trial:
    options: dict[str, Any]
    median_ms: float
    identical: bool


@dataclass(frozen=True)
class Tuning:
    case: str
    default: Trial
    best: Trial
    trials: tuple[Trial, ...]

    @property
    def gain(self) -> float:
        return self.default.median_ms / self.best.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "gain": self.gain,
            "default": asdict(self.default),
            "best": asdict(self.best),
            "trials": [asdict(t) for t in self.trials],
        }


def grid(threads: int) -> list[dict[str, Any]]:
    """The default configuration first, then its variations."""
    return [
        {"intra_op_num_threads": t, "graph_optimization_level": level, "execution_mode": mode}
        for t in dict.fromkeys((threads, 1))
        for level in ("ORT_ENABLE_ALL", "ORT_ENABLE_BASIC")
        for mode in ("ORT_SEQUENTIAL", "ORT_PARALLEL")
    ]


def tune(path: Path, case: bench.Case, *, threads: int, vocab_size: int, batch_first: bool, budget_s: float) -> Tuning:
    """Time every configuration round-robin on ``case``; outputs are compared on probes of several shapes."""
    configs = grid(threads)
    contenders = [
        bench.onnx_file(f"config {i}", path, config["intra_op_num_threads"], config) for i, config in enumerate(configs)
    ]
    probes = [
        bench.inputs(bench.Case("probe", b, n), vocab_size=vocab_size, batch_first=batch_first, seed=1)
        for b, n in ((1, 7), (3, 64), (2, 300))
    ]
    outputs = [[np.asarray(c.call(ids)[0]) for ids in probes] for c in contenders]
    identical = [all(np.array_equal(a, b) for a, b in zip(out, outputs[0])) for out in outputs]
    ids = bench.inputs(case, vocab_size=vocab_size, batch_first=batch_first)
    timings = bench.measure(contenders, case, ids, budget_s=budget_s)
    trials = tuple(Trial(config, t.median_ms, same) for config, t, same in zip(configs, timings, identical))
    best = min((t for t in trials if t.identical), key=lambda t: t.median_ms)
    return Tuning(case.name, trials[0], best, trials)


def save(tuning: dict[str, Any], artifact: Path) -> Path:
    """Write the chosen options (``tuning`` as from ``Tuning.to_dict``) as ``<artifact>.session.json``."""
    target = artifact.with_name(artifact.name + ".session.json")
    target.write_text(json.dumps({"session_options": tuning["best"]["options"], "measured": tuning}, indent=2) + "\n")
    return target


def tuned_session(path: str | Path) -> Any:
    """An onnxruntime session for ``path`` with the options saved beside it, or defaults if there are none."""
    path = Path(path)
    saved = path.with_name(path.name + ".session.json")
    options = json.loads(saved.read_text())["session_options"] if saved.is_file() else {}
    return bench.onnx_session(path, options.pop("intra_op_num_threads", 0), options)
