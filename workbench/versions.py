"""Versions of installed tools, read robustly: any installed distribution that provides the module counts
(``onnxruntime-gpu`` or ``onnxruntime-openvino`` provide ``onnxruntime``); unknown is a value, never an error."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

UNKNOWN = "unknown"


@cache
def _providers() -> Mapping[str, list[str]]:
    from importlib.metadata import packages_distributions

    return packages_distributions()


def module_version(module: str) -> str:
    """The version of the distribution that installs top-level ``module``; ``unknown`` when none can be read."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except (PackageNotFoundError, ValueError):
        pass
    for name in _providers().get(module, []):  # scanning every distribution is slow: only when the name differs
        try:
            return version(name)
        except (PackageNotFoundError, ValueError):
            continue
    return UNKNOWN


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found without importing it)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None
