"""Ray glue: connect, read the nodes and their CPU types, place a task, gather its result.

``ray`` is imported inside these functions only (``pip install -e ".[ray]"``). Tasks are plain top-level functions
of file paths and parameters returning file paths, so the same function runs in-process or on a Ray worker. A node's
CPU type is a custom resource named after a type in ``workbench.machines.TYPES`` (``ray start --resources=
"$(python -m workbench.machines)"``); a task for a type asks for a sliver of that resource, so several tasks can share
a node of the type, and a timing task also asks for all the node's CPUs, so nothing else runs beside it.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.errors import InputError
from workbench.machines import NAMES

TYPE_SHARE = 0.001  # of a node's type resource (1.0) a task asks for: placement only, never a limit
INSTALL = 'pip install -e ".[ray]"'


@dataclass(frozen=True)
class Node:
    """An alive Ray node: its id, its CPUs and the CPU types it advertises."""

    id: str
    cpus: int
    types: tuple[str, ...]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray, which is not installed; install it with: {INSTALL}") from None
    return ray


def connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` (``auto``: the one started on this machine or named by RAY_ADDRESS);
    False when this process had already joined one."""
    ray = _ray()
    if ray.is_initialized():
        return False
    _reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING", configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--ray {address}: cannot join a Ray cluster: {first} (start one with `ray start --head`)") from None
    return True


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` that nothing answers on is one line now (Ray itself waits minutes for it)."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InputError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def disconnect() -> None:
    """Leave the cluster (the cluster keeps running)."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()


def nodes() -> list[Node]:
    """The cluster's alive nodes."""
    ray = _ray()
    out = []
    for node in ray.nodes():
        if node.get("Alive"):
            resources = node.get("Resources", {})
            types = tuple(name for name in NAMES if resources.get(name, 0) > 0)
            out.append(Node(id=node["NodeID"], cpus=int(resources.get("CPU", 0)), types=types))
    return out


def placement(machine: str | None, *, whole_node: bool, cluster: list[Node]) -> dict[str, Any]:
    """Ray task options: on a node of type ``machine`` (any node when None), taking all its CPUs when ``whole_node``.

    A whole-node task asks for as many CPUs as the largest node of the type has: it lands only on such a node, alone.
    """
    fitting = [n for n in cluster if machine is None or machine in n.types]
    if not fitting:
        have = sorted({t for n in cluster for t in n.types}) or ["none"]
        raise InputError(f"no node of type {machine} in the Ray cluster; the nodes' types: {', '.join(have)}")
    options: dict[str, Any] = {"num_cpus": max(n.cpus for n in fitting) if whole_node else 1, "max_retries": 0}
    if machine is not None:
        options["resources"] = {machine: TYPE_SHARE}
    return options


def submit(task: Callable[..., Any], options: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    """Start ``task(*args, **kwargs)`` on the cluster with ``options``; a reference to its result."""
    ray = _ray()
    return ray.remote(task).options(**options).remote(*args, **kwargs)


def result(ref: Any) -> Any:
    """The task's return value; an exception it raised is raised here as itself (not wrapped by Ray)."""
    ray = _ray()
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise


def node_id() -> str:
    """The Ray node this code runs on, or this host's name outside a Ray worker."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return socket.gethostname()
