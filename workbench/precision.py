"""Precision as a type: what a stage's artifact computes in, and the thresholds it is judged by by default.

A stage declares the precision it produces (``@stage(..., precision=INT8)``). A new precision (fp16, int4, ...)
is one ``Precision(...)`` registered with ``register``; nothing else in the workbench names precisions.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class Accept(BaseModel):
    """Acceptance thresholds; ``None`` means the figure is reported but not judged.

    Outputs pass when every element has ``|candidate - reference| <= max_abs_error + rtol * |reference|``
    (numpy.isclose's rule, with both terms written out).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    max_abs_error: float | None = Field(None, ge=0)
    rtol: float | None = Field(None, ge=0)
    min_agreement: float | None = Field(None, ge=0, le=1)
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)

    def describe(self) -> str:
        """The rule in words, as the report prints it beside a verdict."""
        parts = []
        if self.max_abs_error is not None:
            scaled = f" + {self.rtol:g} x |reference|" if self.rtol else ""
            parts.append(f"|diff| <= {self.max_abs_error:g}{scaled}")
        if self.min_agreement is not None:
            parts.append(f"agreement >= {self.min_agreement:.1%}")
        if self.max_accuracy_drop is not None:
            parts.append(f"accuracy drop <= {100 * self.max_accuracy_drop:.2f} points")
        return ", ".join(parts) or "not judged"


@dataclass(frozen=True)
class Precision:
    """What an artifact computes in.

    ``accept``: the default thresholds of a stage producing it. ``batch_dependence``: whether each sample is
    also run alone to show how far its output moves with the rest of its batch (quantized activations).
    ``quantized``: compared, in speed tables, with PyTorch's own int8 as well as its fp32.
    """

    name: str
    accept: Accept
    batch_dependence: bool = False
    quantized: bool = False

    def __str__(self) -> str:
        return self.name


PRECISIONS: dict[str, Precision] = {}


def register(precision: Precision) -> Precision:
    if precision.name in PRECISIONS and PRECISIONS[precision.name] != precision:
        raise RuntimeError(f"precision {precision.name!r} is registered twice")
    PRECISIONS[precision.name] = precision
    return precision


# rtol: ORT's fp32 LSTM kernel drifts from PyTorch by up to ~1.5e-5 on logits of ~6 (README, "Exactness")
FP32 = register(Precision("fp32", Accept(max_abs_error=1e-5, rtol=1e-5, min_agreement=1.0, max_accuracy_drop=0.0)))
INT8 = register(
    Precision("int8", Accept(min_agreement=0.995, max_accuracy_drop=0.005), batch_dependence=True, quantized=True)
)
