"""The stage registry: a recipe's stage name -> the function that runs it, its parameters, facts and precision.

A stage takes its input (the torch model for ``export``, otherwise the previous ONNX file), its typed
parameters and an output path; it writes one ONNX file there and returns its typed facts (a ``Facts``
subclass that also says how it reads in the report). It never touches its input, and knows nothing of
validation, caching or reports.
Adding a stage: one module (here or anywhere) decorated with ``@stage(...)``; the ones shipped are imported below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from workbench.precision import Precision

if TYPE_CHECKING:
    import numpy as np
    import torch


class Params(BaseModel):
    """Base of every stage's parameters: frozen, strict, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Facts(BaseModel):
    """Base of every stage's facts: what the stage did, typed, and how that reads in the report.

    ``warnings`` holds what the tool said (whole lines); ``lines()`` gives the report's bullet lines.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    warnings: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The facts as the report's bullet lines (without the leading "- ")."""
        return []


Feeds = dict[str, "np.ndarray"]


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
    max_length: int | None = None  # the longest sequence the exported graph must accept (None: no bound)

    @cached_property
    def module(self) -> torch.nn.Module:
        return self.build()

    @cached_property
    def example(self) -> tuple[torch.Tensor, ...]:
        return self.make_example()


@dataclass(frozen=True)
class Source:
    """A stage's input: the torch model (first stage) or the previous ONNX file, and calibration batches.

    ``calibration(n)`` yields feed batches (input name -> array, laid out as the model takes them) of at
    most ``n`` samples in all, drawn from data disjoint from the evaluation set; for stages that calibrate.
    """

    torch: TorchSource | None = None
    onnx: Path | None = None
    calibration: Callable[[int], Iterator[Feeds]] | None = None


RunStage = Callable[[Source, Any, Path], Facts]
# how the stage would quantize single nodes of its input: (params, source) -> a callable (fp32 file, destination,
# node names) -> None; lets the per-layer error analysis quantize one node at a time the way the stage does
Requantize = Callable[[Any, Source], Callable[[Path, Path, list[str]], None]]


@dataclass(frozen=True)
class StageSpec:
    name: str
    params: type[Params]
    facts: type[Facts]
    run: RunStage
    precision: Precision | None  # what it produces (None: its input's); picks the default thresholds and checks
    takes: Literal["torch", "onnx"]
    calibrates: bool  # reads ``Source.calibration``: its cache key includes the data
    requantize: Requantize | None = None  # a quantizing stage: how it quantizes chosen nodes


REGISTRY: dict[str, StageSpec] = {}


def stage(
    name: str,
    *,
    params: type[Params],
    facts: type[Facts] = Facts,
    precision: Precision | None = None,
    takes: Literal["torch", "onnx"] = "onnx",
    calibrates: bool = False,
    requantize: Requantize | None = None,
) -> Callable[[RunStage], RunStage]:
    """Register the decorated function as the stage called ``name`` in recipes."""

    def register(run: RunStage) -> RunStage:
        if name in REGISTRY:
            raise RuntimeError(f"stage {name!r} is registered twice")
        REGISTRY[name] = StageSpec(name, params, facts, run, precision, takes, calibrates, requantize)
        return run

    return register


from workbench.stages import export, ort_optimize, quantize_dynamic, quantize_static, simplify  # noqa: E402,F401  (registers)
