"""What results depend on besides the recipe's inputs: tool versions, the code that made them, the machine, threads."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import __version__
from workbench.runtimes import ENGINES
from workbench.store.files import file_sha256

if TYPE_CHECKING:
    from workbench.recipe import Recipe, RuntimeConfig


def tool_versions(runtimes: tuple[RuntimeConfig, ...] = ()) -> dict[str, str]:
    """Versions of the tools results depend on, read from package metadata (importing onnxsim alone takes 0.6 s)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"workbench": __version__, "python": platform.python_version()}
    for package in ("torch", "onnx", "onnxruntime", "onnxsim", "numpy"):
        versions[package] = version(package)
    try:
        versions["transformers"] = version("transformers")  # the zoo's BERT is built by it
    except PackageNotFoundError:
        pass
    for runtime in runtimes:
        versions.setdefault(runtime.name, ENGINES[runtime.name].version())
    return versions


def machine() -> dict[str, str]:
    """CPU model and core count: what a benchmark's figures belong to."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count())}


def snapshot(threads: int, runtimes: tuple[RuntimeConfig, ...]) -> dict[str, str]:
    """Everything about the tools and the machine a run's report records."""
    return {**tool_versions(runtimes), **machine(), "threads": str(threads), "platform": platform.platform()}


def source_sha256(function: Callable[..., Any]) -> str:
    """The sha256 of the file that defines ``function``: editing a stage's code redoes its cached work."""
    import inspect

    try:
        return file_sha256(Path(inspect.getsourcefile(function) or ""))
    except (OSError, TypeError):
        return "unknown"


def threads_for(recipe: Recipe | None, override: int | None = None) -> int:
    """The one rule for threads: the command line, else the recipe, else every core."""
    return override or (recipe.settings.threads if recipe else None) or os.cpu_count() or 1
