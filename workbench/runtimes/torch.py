"""PyTorch runners: the eager fp32 reference, and torch's own dynamic int8 quantization of the same module."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np

from workbench.errors import InputError
from workbench.runtimes import TORCH
from workbench.runtimes.base import Runner

# module types torch.ao.quantization.quantize_dynamic has int8 kernels for
DYNAMIC_INT8_TYPES = ("Linear", "LSTM", "GRU", "LSTMCell", "GRUCell", "RNNCell")


class TorchRunner(Runner):
    engine = TORCH

    def __init__(self, name: str, module: Any, input_names: tuple[str, ...], output_name: str, precision: str):
        self.name, self.module, self.precision = name, module, precision
        self.input_names, self.output_name = tuple(input_names), output_name

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        shapes = ", ".join(f"{name} {list(feeds[name].shape)}" for name in self.input_names)
        try:
            with torch.inference_mode():
                out = self.module(*(torch.from_numpy(feeds[name]) for name in self.input_names))
        except Exception as exc:  # the user's model: wrong arity, ids beyond its embedding, ...
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise InputError(
                f"{type(self.module).__name__}.forward failed on the recipe's declared inputs ({shapes}): "
                f"{type(exc).__name__}: {detail} "
                "(check model.inputs, model.vocab_size and model.max_length against the model)"
            ) from None
        if not isinstance(out, torch.Tensor):
            raise InputError(
                f"{type(self.module).__name__}.forward returned {type(out).__name__}; it must return the logits "
                "tensor [batch, classes] (wrap the model so that forward returns it)"
            )
        return {self.output_name: out.numpy()}


def fp32(name: str, module: Any, input_names: tuple[str, ...], output_name: str) -> TorchRunner:
    return TorchRunner(name, module, input_names, output_name, "fp32 (eager)")


def dynamic_int8(name: str, module: Any, input_names: tuple[str, ...], output_name: str) -> TorchRunner:
    """``torch.ao.quantization.quantize_dynamic`` of the module types the model actually contains."""
    import torch

    present = sorted(
        {type(m).__name__ for m in module.modules() if type(m).__name__ in DYNAMIC_INT8_TYPES},
        key=DYNAMIC_INT8_TYPES.index,
    )
    types = {getattr(torch.nn, t) for t in present}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in 2.13 but still works
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(module), types, dtype=torch.qint8)
    what = ", ".join(present) if present else "nothing (no Linear or recurrent modules)"
    return TorchRunner(name, quantized, input_names, output_name, f"int8 dynamic: {what}")


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
