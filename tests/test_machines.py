"""CPU types from real /proc/cpuinfo flag lines: this machine's, and lines copied from CPUs of each type."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench import machines
from workbench.environment import machine
from workbench.errors import InputError

REPO = Path(__file__).resolve().parents[1]

# flag lines of real CPUs (trimmed to the flags that matter and a few around them)
HASWELL = "fpu vme sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand fma bmi1 avx2 smep bmi2 erms invpcid"
CASCADE_LAKE = HASWELL + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"
SKYLAKE_SP = HASWELL + " avx512f avx512dq avx512cd avx512bw avx512vl"
SAPPHIRE_RAPIDS = CASCADE_LAKE + " avx512_bf16 amx_bf16 amx_tile amx_int8"
ALDER_LAKE = HASWELL + " avx_vnni serialize"
KNIGHTS_LANDING = HASWELL + " avx512f avx512cd avx512er avx512pf"  # AVX-512 F without BW: not the avx512 type
GRAVITON = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"


def _cpuinfo(flags: str, key: str = "flags") -> str:
    return f"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Some CPU\n{key}\t\t: {flags}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize(
    ("flags", "key", "expected"),
    [
        (SAPPHIRE_RAPIDS, "flags", "amx_int8"),
        (CASCADE_LAKE, "flags", "avx512_vnni"),
        (SKYLAKE_SP, "flags", "avx512"),
        (ALDER_LAKE, "flags", "avx_vnni"),
        (HASWELL, "flags", "avx2"),
        (KNIGHTS_LANDING, "flags", "avx2"),
        (GRAVITON, "Features", "baseline"),
        ("fpu sse sse2", "flags", "baseline"),
    ],
)
def test_the_best_type_whose_flags_a_cpu_has_all_of(flags, key, expected):
    assert machines.cpu_type(machines.cpu_flags(_cpuinfo(flags, key))) == expected


def test_unreadable_flags_are_the_baseline():
    assert machines.cpu_flags("model name : x\n") == frozenset()
    assert machines.cpu_type(frozenset()) == "baseline"


def test_this_machine_has_the_type_of_its_own_flags():
    flags = set(Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].lstrip(" \t:").split())
    kind = machines.cpu_type()
    needed = next(t.flags for t in machines.TYPES if t.name == kind)
    better = [t for t in machines.TYPES[: machines.NAMES.index(kind)]]
    assert needed <= flags and all(not t.flags <= flags for t in better), (kind, sorted(flags & {"avx2", "avx512_vnni"}))
    assert machines.cpu_model() == machine()["cpu"] and machines.cpu_model()


def test_types_are_checked_in_the_order_given_once_each():
    assert machines.check(["avx2", "avx512_vnni", "avx2"]) == ("avx2", "avx512_vnni")
    with pytest.raises(InputError, match=r"--machines: unknown machine type 'avx3'; known: amx_int8, avx512_vnni"):
        machines.check(["avx512_vnni", "avx3"])
    with pytest.raises(InputError, match="name at least one machine type"):
        machines.check([])


def test_the_module_prints_the_ray_resources_of_this_machine():
    out = subprocess.run(
        [sys.executable, "-m", "workbench.machines"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == {machines.cpu_type(): 1.0}
