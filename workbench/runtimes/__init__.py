"""Engines: one Runner shape for PyTorch, onnxruntime, OpenVINO and any engine a user registers.

A runner has a name, the input names it expects, what precision really ran, and
``infer(feeds) -> outputs by name`` (Polygraphy's runner shape). Validation and benchmarks call the
same runner objects. An engine for ONNX files is a function registered with ``@engine(name, ...)``
that loads a file into a Runner, or raises ``NotApplicable`` with the engine's own reason.
Adding an engine: one module here, decorated with ``@engine(...)``, and one import line below.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from workbench.runtimes.base import NotApplicable, Runner

REFERENCE = "pytorch fp32"  # the model of record, eager fp32: every figure is measured against it
TORCH_INT8 = "pytorch int8"  # torch's own dynamic int8 quantization of the same module
DEFAULT_ENGINES = ("onnxruntime",)


class EngineParams(BaseModel):
    """Base of every engine's recipe parameters: frozen, strict, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Load = Callable[[Path, EngineParams, int], Runner]


@dataclass(frozen=True)
class EngineSpec:
    name: str
    params: type[EngineParams]
    load: Load  # (onnx file, parameters, threads) -> Runner; raises NotApplicable
    module: str | None  # the import that must be present, e.g. "openvino"
    install: str | None  # what to run when it is not

    def available(self) -> bool:
        return self.module is None or importlib.util.find_spec(self.module) is not None

    def version(self) -> str:
        if self.module is None:
            return "-"
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.module)
        except PackageNotFoundError:
            return "unknown"


ENGINES: dict[str, EngineSpec] = {}


def engine(
    name: str, *, params: type[EngineParams] = EngineParams, module: str | None = None, install: str | None = None
) -> Callable[[Load], Load]:
    """Register the decorated loader as the engine called ``name`` in recipes (``runtimes: [name]``)."""

    def register(load: Load) -> Load:
        if name in ENGINES:
            raise RuntimeError(f"engine {name!r} is registered twice")
        ENGINES[name] = EngineSpec(name, params, load, module, install)
        return load

    return register


def row_name(engine_name: str, stage: str) -> str:
    """How a stage's artifact on one engine is named in every table: ``<engine>:<stage>``."""
    return f"{engine_name}:{stage}"


__all__ = ["ENGINES", "EngineParams", "EngineSpec", "NotApplicable", "REFERENCE", "Runner", "TORCH_INT8", "engine"]

from workbench.runtimes import onnxruntime, openvino  # noqa: E402,F401  (registers)
