"""``export``: torch.onnx.export with the TorchScript exporter, dynamic axes, provenance metadata."""

from __future__ import annotations

import warnings
from pathlib import Path

from pydantic import Field

from workbench.stages import Facts, Params, Source, stage


class ExportParams(Params):
    opset: int = Field(17, ge=11, le=21)
    constant_folding: bool = True


class ExportFacts(Facts):
    exporter: str
    torch: str
    opset: int

    def lines(self) -> list[str]:
        return [f"exporter: {self.exporter}, torch {self.torch}, opset {self.opset}"]


@stage("export", params=ExportParams, facts=ExportFacts, takes="torch")
def export(source: Source, params: ExportParams, dst: Path) -> ExportFacts:
    """Export the module; the TorchScript exporter keeps the ``LSTM`` op and both dynamic axes.

    (torch 2.13's default dynamo exporter fixes a size-1 batch axis of the example input to 1.)
    """
    import onnx
    import torch

    model = source.torch
    assert model is not None, "export takes the torch model"
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")  # kept for the report (the legacy exporter's notice, its LSTM batch note)
        torch.onnx.export(
            model.module,
            model.example,
            str(dst),
            dynamo=False,
            opset_version=params.opset,
            do_constant_folding=params.constant_folding,
            input_names=list(model.input_names),
            output_names=[model.output_name],
            dynamic_axes=model.dynamic_axes,
        )
    proto = onnx.load(str(dst))
    onnx.helper.set_model_props(proto, {**model.metadata, "onnx_opset": str(params.opset)})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(dst))
    return ExportFacts(
        exporter="torch.onnx.export(dynamo=False)",
        torch=torch.__version__,
        opset=params.opset,
        warnings=tuple(dict.fromkeys(str(w.message).strip() for w in caught)),
    )
