"""The workbench's user-facing errors: one line for the user, never a traceback.

Anything else that escapes is a bug in the workbench and keeps its traceback.
"""

import traceback


class WorkbenchError(Exception):
    """A mistake in what the user gave us (a recipe, a file, an input); exit code 2."""

    exit_code = 2


class RecipeError(WorkbenchError):
    """A recipe that does not parse or validate; the message names file, key path and what is allowed."""


class InputError(WorkbenchError):
    """A weights file, ONNX file, data set or model input that cannot be used as given."""


class StageError(WorkbenchError):
    """A stage that could not produce a valid artifact (e.g. a quantizer that left an op in fp32)."""

    exit_code = 1


class EngineRefused(Exception):
    """An engine's own call (onnxruntime's ``run``, OpenVINO's ``infer``) raised: the engine's words are its
    ``__cause__``. Only the engine call is wrapped, so an error of the workbench's own code keeps its traceback."""


def failure_text(exc: BaseException, where: str, *, locate: bool = False) -> str:
    """A tool's own message, its first lines, and where it happened: what a failed row says. ``locate`` adds the
    file, line and function that raised (a bare ``IndexError: list index out of range`` from deep in a tool
    says nothing without it)."""
    if isinstance(exc, EngineRefused) and exc.__cause__ is not None:
        exc = exc.__cause__  # the engine's own exception and words
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " ".join(lines[:3])[:600] or "(no message)"
    frames = traceback.extract_tb(exc.__traceback__) if locate else []
    at = f" (raised at {_short(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{where}: {type(exc).__name__}: {text}{at}"


def _short(filename: str) -> str:
    """A path from its package on (``onnxruntime/transformers/fusion_attention.py``), else the file's name."""
    parts = filename.replace("\\", "/").split("/")
    packages = [i for i, part in enumerate(parts) if part in ("site-packages", "dist-packages")]
    return "/".join(parts[packages[-1] + 1 :]) if packages else parts[-1]
