"""The one runner shape every engine implements, and the refusal an engine may answer with."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from workbench.errors import InputError


class NotApplicable(Exception):
    """An engine cannot run this artifact (it refused to load or compile it); the message is its reason."""


def first_of(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The first of a runner's outputs as float32 (the logits, for a classifier)."""
    return np.asarray(next(iter(outputs.values())), dtype=np.float32)


class Runner(ABC):
    """A loaded model on one engine.

    ``name`` labels the runner's rows (e.g. ``onnxruntime:quantize_dynamic``); ``precision`` says what
    really ran, as the engine reports it, not what the file claims.
    """

    name: str
    engine: str
    precision: str
    input_names: tuple[str, ...]

    @abstractmethod
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: input name -> array in, output name -> array out."""

    def first_output(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The first output as float32 (the logits, for a classifier)."""
        return first_of(self.infer(feeds))

    def check_inputs(self, expected: tuple[str, ...], where: object) -> None:
        """The declared inputs must be exactly the runner's (order aside); else a clear InputError."""
        if set(expected) != set(self.input_names):
            raise InputError(
                f"{where}: inputs {list(self.input_names)} do not match the recipe's declared inputs {list(expected)}"
            )
