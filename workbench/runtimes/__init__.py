"""Engines: one Runner shape for PyTorch, onnxruntime, OpenVINO and any engine a user registers.

A runner has a name, the input names it expects, what precision really ran, and
``infer(feeds) -> outputs by name`` (Polygraphy's runner shape). Validation and benchmarks call the
same runner objects. An engine for ONNX files is a function registered with ``@engine(name, ...)``
that loads a file into a Runner, or raises ``NotApplicable`` with the engine's own reason.
What only some engines can do is an optional hook on the engine: ``tuner`` (a grid of load options to try,
and how to load a file with one of them) and ``profiler`` (op type -> share of node time).
Adding an engine: one module (here or anywhere) decorated with ``@engine(...)``; the shipped ones are imported below.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pydantic import BaseModel, ConfigDict

from workbench.runtimes.base import NotApplicable, Runner

REFERENCE = "pytorch fp32"  # the model of record, eager fp32: every figure is measured against it
TORCH_INT8 = "pytorch int8"  # torch's own dynamic int8 quantization of the same module
TORCH = "pytorch"  # the engine of both references
DEFAULT_ENGINES = ("onnxruntime",)


class EngineParams(BaseModel):
    """Base of every engine's recipe parameters: frozen, strict, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Load = Callable[[Path, EngineParams, int], Runner]
Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Tuner:
    """An engine's tuning hook: option sets to try (the engine's default first) and how to load a file with one."""

    grid: Callable[[int], list[dict[str, Any]]]  # threads -> option sets
    load: Callable[[Path, EngineParams, int, dict[str, Any]], Runner]  # (file, parameters, threads, options)
    label: Callable[[dict[str, Any]], str]  # an option set in the report's words


Profiler = Callable[[Path, EngineParams, Feeds, int], dict[str, float]]  # -> op type -> share of node time


@dataclass(frozen=True)
class EngineSpec:
    name: str
    params: type[EngineParams]
    load: Load  # (onnx file, parameters, threads) -> Runner; raises NotApplicable
    module: str | None  # the import that must be present, e.g. "openvino"
    install: str | None  # what to run when it is not
    tuner: Tuner | None = None
    profiler: Profiler | None = None

    def available(self) -> bool:
        return self.module is None or importlib.util.find_spec(self.module) is not None

    def version(self) -> str:
        from workbench.versions import module_version

        return "-" if self.module is None else module_version(self.module)


ENGINES: dict[str, EngineSpec] = {}


def engine(
    name: str,
    *,
    params: type[EngineParams] = EngineParams,
    module: str | None = None,
    install: str | None = None,
    tuner: Tuner | None = None,
    profiler: Profiler | None = None,
) -> Callable[[Load], Load]:
    """Register the decorated loader as the engine called ``name`` in recipes (``runtimes: [name]``)."""

    def register(load: Load) -> Load:
        if name in ENGINES:
            raise RuntimeError(f"engine {name!r} is registered twice")
        ENGINES[name] = EngineSpec(name, params, load, module, install, tuner, profiler)
        return load

    return register


def tuned_path(artifact: Path) -> Path:
    """Where the options tuning chose for ``artifact`` are saved: ``<artifact>.session.json``."""
    return artifact.with_name(artifact.name + ".session.json")


def load_tuned(path: str | Path, threads: int = 0) -> Runner:
    """A runner for ``path`` with the options saved beside it by tuning (engine and options), or onnxruntime's
    defaults when there are none. ``threads`` 0: the saved options' or the engine's own choice."""
    path = Path(path)
    saved = tuned_path(path)
    if not saved.is_file():
        spec = ENGINES[DEFAULT_ENGINES[0]]
        return spec.load(path, spec.params(), threads)
    chosen = json.loads(saved.read_text())
    spec = ENGINES[chosen["engine"]]
    if spec.tuner is None:
        raise RuntimeError(f"{saved}: engine {spec.name!r} has no tuning hook")
    params = spec.params.model_validate(chosen.get("params", {}))
    return spec.tuner.load(path, params, threads, chosen["options"])


def row_name(engine_name: str, stage: str) -> str:
    """How a stage's artifact on one engine is named in every table: ``<engine>:<stage>``."""
    return f"{engine_name}:{stage}"


__all__ = ["ENGINES", "EngineParams", "EngineSpec", "NotApplicable", "REFERENCE", "Runner", "TORCH_INT8", "engine"]

from workbench.runtimes import onnxruntime, openvino  # noqa: E402,F401  (registers)
