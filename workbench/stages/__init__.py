"""The stage registry: a recipe's stage name -> the function that runs it and its parameter type.

A stage takes its input (the torch model for ``export``, otherwise the previous ONNX file), its typed
parameters and an output path; it writes one ONNX file there and returns facts about what it did.
It never touches its input, and knows nothing of validation, caching or reports.
Adding a stage: one module here, decorated with ``@stage(...)``, and one import line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch


class Params(BaseModel):
    """Base of every stage's parameters: frozen, strict, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


@dataclass(eq=False)
class TorchSource:
    """What ``export`` needs: the eval-mode module, its inputs in ``forward``'s order, and its output.

    The module and the example inputs are built on first use: a rerun whose every stage, check and
    benchmark comes from the cache never imports torch.
    """

    build: Callable[[], torch.nn.Module]
    input_names: tuple[str, ...]
    output_name: str
    make_example: Callable[[], tuple[torch.Tensor, ...]]
    dynamic_axes: dict[str, dict[int, str]]
    metadata: dict[str, str]

    @cached_property
    def module(self) -> torch.nn.Module:
        return self.build()

    @cached_property
    def example(self) -> tuple[torch.Tensor, ...]:
        return self.make_example()


@dataclass(frozen=True)
class Source:
    torch: TorchSource | None = None
    onnx: Path | None = None


Facts = dict[str, Any]
RunStage = Callable[[Source, Any, Path], Facts]


@dataclass(frozen=True)
class StageSpec:
    name: str
    params: type[Params]
    run: RunStage
    precision: Literal["fp32", "int8"]  # picks the default acceptance thresholds
    takes: Literal["torch", "onnx"]


REGISTRY: dict[str, StageSpec] = {}


def stage(
    name: str,
    *,
    params: type[Params],
    precision: Literal["fp32", "int8"] = "fp32",
    takes: Literal["torch", "onnx"] = "onnx",
) -> Callable[[RunStage], RunStage]:
    """Register the decorated function as the stage called ``name`` in recipes."""

    def register(run: RunStage) -> RunStage:
        if name in REGISTRY:
            raise RuntimeError(f"stage {name!r} is registered twice")
        REGISTRY[name] = StageSpec(name, params, run, precision, takes)
        return run

    return register


from workbench.stages import export, ort_optimize, quantize_dynamic, simplify  # noqa: E402,F401  (registers)
