"""One pass over the evaluation set split across Ray workers (``workbench run --ray ADDRESS``).

Each worker is an actor that builds its runner itself from a ``RunnerSpec`` (a recipe file for the PyTorch
reference, an ONNX file and engine parameters otherwise: sessions never travel), takes windows of samples and sends
back their logits, which the caller writes in place. A pass keeps at most two windows per worker in flight, so the
caller's memory stays bounded too. Workers are placed on nodes of the caller's CPU type when the cluster's nodes
advertise types (int8 kernels, and so outputs, differ between types; a check is keyed by the caller's type).
"""

from __future__ import annotations

import resource
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


@dataclass(frozen=True)
class RunnerSpec:
    """How a worker builds a runner: the recipe's PyTorch reference (``engine`` None) or ``path`` on ``engine``."""

    recipe: str  # the recipe file: the project sits at the same path on every node
    engine: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    name: str = "reference"
    threads: int = 1

    def build(self) -> Runner:
        from workbench import recipe as recipes
        from workbench.runtimes import ENGINES

        if self.engine is None:
            from workbench.model import torch_source
            from workbench.runtimes import REFERENCE
            from workbench.runtimes import torch as torch_runners

            source, _ = torch_source(recipes.load(self.recipe))
            torch_runners.set_threads(self.threads)
            return torch_runners.fp32(REFERENCE, source.module, source.input_names, source.output_name)
        spec = ENGINES[self.engine]
        runner = spec.load(Path(self.path), spec.params.model_validate(self.params), self.threads)
        runner.name = self.name
        return runner


class Worker:
    """A Ray actor holding one runner; ``logits`` of a window of samples, as ``validate.logits`` computes them."""

    def __init__(self, spec: RunnerSpec):
        self.runner = spec.build()

    def logits(self, samples: Sequence[Sample], feed: FeedSpec, batch_size: int, padded: bool) -> np.ndarray:
        from workbench import validate

        return validate.logits(self.runner, samples, feed, batch_size=batch_size, padded=padded)

    def peak_rss_mb(self) -> float:
        """This worker process's peak resident memory."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class Spread:
    """Where passes go: ``workers`` actors of ``threads`` threads each on the cluster this process joined; the peak
    memory of each pass's largest worker is kept for the report."""

    workers: int
    threads: int = 1
    peaks: list[float] = field(default_factory=list, compare=False)

    def record(self) -> SplitValidation | None:
        """What the report says of the split; None when every pass came from the cache."""
        if not self.peaks:
            return None
        return SplitValidation(
            workers=self.workers, threads=self.threads, passes=len(self.peaks), peak_worker_rss_mb=max(self.peaks)
        )

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

        actor = ray.remote(Worker).options(**self._placement())
        workers = [actor.remote(spec) for _ in range(self.workers)]
        out: np.ndarray | None = None
        pending: dict[Any, tuple[int, int]] = {}  # result -> (first index, samples)
        try:
            queue = iter(windows)
            turn = 0
            while True:
                while len(pending) < IN_FLIGHT * len(workers) and (item := next(queue, None)) is not None:
                    start, samples = item
                    ref = workers[turn % len(workers)].logits.remote(samples, feed, batch_size, padded)
                    pending[ref] = (start, len(samples))
                    turn += 1
                if not pending:
                    break
                [ready], _ = ray.wait(list(pending), num_returns=1)
                start, count = pending.pop(ready)
                try:
                    values = cluster.result(ready)
                except ray.exceptions.RayActorError as exc:  # the worker could not build its runner, or died
                    raise WorkbenchError(failure_text(exc, f"a Ray worker for {spec.name} failed")) from None
                if out is None:
                    if check:
                        check(values.shape[1])
                    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(total, values.shape[1]))
                out[start : start + count] = values
                if advance:
                    advance(count)
            self.peaks.append(max(ray.get([worker.peak_rss_mb.remote() for worker in workers])))
        finally:
            for worker in workers:
                ray.kill(worker)
        if out is None:
            raise InputError("the evaluation set is empty")
        out.flush()

    def _placement(self) -> dict[str, Any]:
        """One CPU per thread, on a node of this machine's CPU type when the nodes advertise types."""
        options: dict[str, Any] = {"num_cpus": self.threads, "max_restarts": 0}
        own = machines.cpu_type()
        nodes = cluster.nodes()
        if any(n.types for n in nodes):
            options.update(cluster.placement(own, whole_node=False, cluster=nodes))
            options["num_cpus"] = self.threads
            options.pop("max_retries", None)
        return options
