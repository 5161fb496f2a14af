"""CPU types: which int8 kernels a machine can run, read from its CPU flags.

The same int8 file gives different logits and speed on different CPU types (an AVX2 CPU without VNNI saturates in
int8 matrix multiplies, onnxruntime#14642), so a file is validated per type. A machine's type is the first of
``TYPES`` whose flags it has all of: the best int8 kernels it runs. A Ray node advertises its type as a custom
resource (``resources()``; ``python -m workbench.machines`` prints it for ``ray start --resources``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import NamedTuple

from workbench.errors import InputError


class MachineType(NamedTuple):
    name: str
    flags: frozenset[str]  # /proc/cpuinfo flags the type needs, all of them
    meaning: str


TYPES: tuple[MachineType, ...] = (  # best first
    MachineType("amx_int8", frozenset({"amx_int8"}), "AMX int8 tiles (Sapphire Rapids and later)"),
    MachineType("avx512_vnni", frozenset({"avx512_vnni"}), "AVX-512 with VNNI int8 dot products"),
    MachineType("avx512", frozenset({"avx512f", "avx512bw"}), "AVX-512 without VNNI"),
    MachineType("avx_vnni", frozenset({"avx2", "avx_vnni"}), "AVX2 with VEX-encoded VNNI"),
    MachineType("avx2", frozenset({"avx2"}), "AVX2 without VNNI: int8 products can saturate"),
    MachineType("baseline", frozenset(), "none of the above (or flags unreadable)"),
)
NAMES = tuple(t.name for t in TYPES)
CPUINFO = Path("/proc/cpuinfo")


@cache
def _local_cpuinfo() -> str:
    """This machine's /proc/cpuinfo, read once per process (check keys ask for the CPU type on every check)."""
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The flags of the first processor in ``cpuinfo`` (default: this machine's /proc/cpuinfo; empty if unreadable)."""
    if cpuinfo is None:
        cpuinfo = _local_cpuinfo()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_type(flags: Iterable[str] | None = None) -> str:
    """The best type in ``TYPES`` whose flags ``flags`` (default: this machine's) all include."""
    have = cpu_flags() if flags is None else frozenset(flags)
    return next(t.name for t in TYPES if t.flags <= have)


def cpu_model() -> str:
    """This machine's CPU model name (e.g. ``AMD EPYC 9R14``), as the reports record it."""
    from workbench.environment import machine

    return machine()["cpu"]


def check(names: Iterable[str], where: str = "--machines") -> tuple[str, ...]:
    """``names`` as known type names, in the order given, once each; an unknown one is an InputError."""
    out: list[str] = []
    for name in names:
        if name not in NAMES:
            raise InputError(f"{where}: unknown machine type {name!r}; known: {', '.join(NAMES)}")
        if name not in out:
            out.append(name)
    if not out:
        raise InputError(f"{where}: name at least one machine type; known: {', '.join(NAMES)}")
    return tuple(out)


def resources() -> dict[str, float]:
    """The custom resource a Ray node on this machine advertises: its CPU type."""
    return {cpu_type(): 1.0}


if __name__ == "__main__":  # ray start --head --resources="$(python -m workbench.machines)"
    print(json.dumps(resources()))
