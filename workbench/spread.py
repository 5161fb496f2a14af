"""One pass over the evaluation set split across Ray workers (``workbench run --ray ADDRESS``).

Each worker is an actor that builds its runner itself from a ``RunnerSpec``: the recipe's PyTorch reference (the
project sits at the same path on every node), or an ONNX file, which it opens where it is when the copy on its node
has the same sha256 and otherwise receives through Ray's object store (a node never sees another's cache). It takes
windows of samples and sends back their logits, which the caller writes in place; at most ``IN_FLIGHT`` windows per
worker are out at once. Workers go to nodes of the caller's CPU type when the cluster's nodes advertise types (int8
kernels, and so outputs, differ between types, and a check is keyed by the caller's type), and a run asks for no
more workers than those nodes have CPUs, so no worker waits for a place. The caller still loads each artifact itself:
an engine that refuses it, its inputs and the precision it runs are decided there, as without Ray.
"""

from __future__ import annotations

import resource
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench import cluster, machines
from workbench.data import Sample
from workbench.errors import InputError, WorkbenchError, failure_text
from workbench.feeds import FeedSpec
from workbench.results import SplitValidation
from workbench.runtimes.base import Runner

IN_FLIGHT = 2  # windows per worker sent ahead
PLACE_SECONDS = 600  # how long workers may wait for a place (and build their runner) before the pass fails


@dataclass(frozen=True)
class RunnerSpec:
    """How a worker builds a runner: the recipe's PyTorch reference (``engine`` None) or ``path`` on ``engine``."""

    recipe: str  # the recipe file
    engine: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    sha256: str | None = None  # of ``path``: a worker's own copy is used only when it is the same file
    name: str = "reference"
    threads: int = 1

    def build(self, shipped: Any = None) -> tuple[Runner, Any]:
        """The runner, and what must live as long as it (the folder of a shipped file); ``shipped``: a list holding a
        reference to the file's bytes in Ray's object store (in a list, Ray does not fetch them unless asked)."""
        from workbench import environment
        from workbench import recipe as recipes
        from workbench.runtimes import ENGINES, REFERENCE
        from workbench.runtimes import torch as torch_runners
        from workbench.store.files import file_sha256

        environment.bound_shape_caches()
        if self.engine is None:
            from workbench.model import torch_source

            source, _ = torch_source(recipes.load(self.recipe))
            torch_runners.set_threads(self.threads)
            return torch_runners.fp32(REFERENCE, source.module, source.input_names, source.output_name), None
        assert self.path is not None
        path, folder = Path(self.path), None
        if not (path.is_file() and file_sha256(path) == self.sha256):
            import ray

            folder = tempfile.TemporaryDirectory(prefix="wb-shipped-")
            path = Path(folder.name) / path.name
            path.write_bytes(ray.get(shipped[0]))
        spec = ENGINES[self.engine]
        runner = spec.load(path, spec.params.model_validate(self.params), self.threads)
        runner.name = self.name
        return runner, folder


class Worker:
    """A Ray actor holding one runner; ``logits`` of a window of samples, as ``validate.logits`` computes them."""

    def __init__(self, spec: RunnerSpec, shipped: Any = None):
        self.runner, self._keep = spec.build(shipped)

    def logits(self, samples: Sequence[Sample], feed: FeedSpec, batch_size: int, padded: bool) -> np.ndarray:
        from workbench import validate

        return validate.logits(self.runner, samples, feed, batch_size=batch_size, padded=padded)

    def peak_rss_mb(self) -> float:
        """This worker process's peak resident memory."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Spread:
    """Where passes go: ``workers`` actors (None: one per CPU of the nodes they may use) of ``threads`` threads on the
    cluster this process joined; the peak memory of each pass's largest worker is kept for the report."""

    workers: int | None = None
    threads: int = 1
    peaks: list[float] = field(default_factory=list)
    used: int = 0  # workers of the last pass

    def place(self) -> tuple[int, dict[str, Any]]:
        """How many workers and their Ray options; refuses, before any work, more workers than the nodes of this
        machine's type have CPUs for."""
        nodes = cluster.nodes()
        own = machines.cpu_type()
        typed = any(n.types for n in nodes)
        fitting = [n for n in nodes if own in n.types] if typed else nodes
        cpus = sum(n.cpus for n in fitting)
        where = f"the cluster's nodes of type {own}" if typed else "the cluster's nodes"
        if cpus < self.threads:
            raise InputError(f"--ray: {where} have {cpus} CPUs; a worker needs {self.threads}")
        workers = self.workers or cpus // self.threads
        if workers * self.threads > cpus:
            raise InputError(f"--workers {workers}: {where} have {cpus} CPUs, room for {cpus // self.threads} workers")
        options: dict[str, Any] = {"num_cpus": self.threads, "max_restarts": 0}
        if typed:
            options["resources"] = {own: cluster.TYPE_SHARE}
        return workers, options

    def write_logits(
        self,
        spec: RunnerSpec,
        windows: Iterable[tuple[int, Sequence[Sample]]],
        total: int,
        feed: FeedSpec,
        path: Path,
        *,
        batch_size: int,
        padded: bool = False,
        advance: Callable[[int], None] | None = None,
        check: Callable[[int], None] | None = None,
    ) -> None:
        """``validate.write_logits``, the windows computed by the workers."""
        import ray

        from workbench.validate import LogitsFile

        count, options = self.place()
        self.used = count
        shipped = [ray.put(Path(spec.path).read_bytes())] if spec.path else None
        out = LogitsFile(path, total, check)
        workers: list[Any] = []
        try:
            for _ in range(count):  # one at a time: those made before a failure are killed below
                workers.append(ray.remote(Worker).options(**options).remote(spec, shipped))
            _, unplaced = ray.wait([w.__ray_ready__.remote() for w in workers], num_returns=count, timeout=PLACE_SECONDS)
            if unplaced:  # the cluster changed since ``place``, or other work holds its CPUs: fail, do not wait for ever
                raise WorkbenchError(
                    f"--ray: {len(unplaced)} of {count} Ray workers for {spec.name} got no place within {PLACE_SECONDS} s "
                    "(the cluster's CPUs are taken); try fewer --workers"
                )
            pending: dict[Any, tuple[int, int]] = {}  # result -> (first index, samples)
            queue, turn = iter(windows), 0
            while True:
                while len(pending) < IN_FLIGHT * count and (item := next(queue, None)) is not None:
                    start, samples = item
                    ref = workers[turn % count].logits.remote(samples, feed, batch_size, padded)
                    pending[ref] = (start, len(samples))
                    turn += 1
                if not pending:
                    break
                [ready], _ = ray.wait(list(pending), num_returns=1)
                start, size = pending.pop(ready)
                out.put(slice(start, start + size), _result(ready, spec))
                if advance:
                    advance(size)
            self.peaks.append(max(ray.get([worker.peak_rss_mb.remote() for worker in workers])))
        finally:
            for worker in workers:
                ray.kill(worker)
        out.close()

    def record(self) -> SplitValidation | None:
        """What the report says of the split; None when every pass came from the cache."""
        if not self.peaks:
            return None
        return SplitValidation(
            workers=self.used, threads=self.threads, passes=len(self.peaks), peak_worker_rss_mb=max(self.peaks)
        )


def _result(ref: Any, spec: RunnerSpec) -> np.ndarray:
    """A window's logits; an error of the engine or the model is raised as itself, a worker lost is one line."""
    import ray

    try:
        return cluster.result(ref)
    except ray.exceptions.RayError as exc:  # the worker could not build its runner, died, or ran out of memory
        raise WorkbenchError(failure_text(exc, f"a Ray worker for {spec.name} failed")) from None
