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
from workbench.machines import cpu_type
from workbench.versions import installed, module_version

if TYPE_CHECKING:
    from workbench.recipe import Recipe, RuntimeConfig
    from workbench.results import Environment


# environment variables that change how the engines run (how they wait and spin, what oneDNN keeps): recorded in
# every report and part of the benchmark suite's key
TIMING_VARIABLES = (
    "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "KMP_BLOCKTIME", "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
)
# oneDNN (PyTorch's CPU kernels) keeps a compiled primitive per input shape, 1,024 by default: over an evaluation
# set's many (batch, length) shapes that held ~300 MB in PyTorch alone, with no gain in speed (measured: 8,000
# samples, batches of 64, 562 MB with the default, 345 MB with none, in the same time). A benchmark repeats a few
# shapes, which a small cache still holds.
ONEDNN_CACHE = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")


def bound_shape_caches() -> None:
    """Bound oneDNN's cache of compiled shapes, unless the user set it: call before torch runs its first kernel."""
    os.environ.setdefault(*ONEDNN_CACHE)


TOOLS = ("torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "numpy", "transformers")


def tool_versions(runtimes: tuple[RuntimeConfig, ...] = ()) -> dict[str, str]:
    """Versions of the tools results depend on, read from package metadata (importing onnxsim alone takes 0.6 s);
    whichever distribution provides a module counts (onnxruntime-gpu provides onnxruntime), absent ones are left out."""
    versions = {"workbench": __version__, "python": platform.python_version()}
    for module in TOOLS:
        if installed(module):
            versions[module] = module_version(module)
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


def snapshot(threads: int, runtimes: tuple[RuntimeConfig, ...]) -> Environment:
    """Everything about the tools and the machine a run's report records."""
    from workbench.results import Environment

    box = machine()
    return Environment(
        versions=tool_versions(runtimes),
        cpu=box["cpu"],
        cpu_type=cpu_type(),
        cores=int(box["cores"]),
        threads=threads,
        platform=platform.platform(),
        timing_settings={name: os.environ[name] for name in TIMING_VARIABLES if name in os.environ},
    )


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
