"""The runners of one run, each built once: validation and benchmarks share these objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.runtimes import ENGINES, REFERENCE, TORCH_INT8, EngineParams, NotApplicable, Runner, row_name
from workbench.runtimes import torch as torch_runners


class Pool:
    def __init__(self, threads: int, source: Any):
        """``source``: a ``stages.TorchSource``; its module is built only when a PyTorch runner is needed."""
        self.threads, self.source = threads, source
        self._runners: dict[tuple[str, str], Runner | NotApplicable] = {}

    def reference(self) -> Runner:
        return self._get(("pytorch", REFERENCE), lambda: torch_runners.fp32(REFERENCE, *self._torch_args()))

    def torch_int8(self) -> Runner:
        return self._get(("pytorch", TORCH_INT8), lambda: torch_runners.dynamic_int8(TORCH_INT8, *self._torch_args()))

    def artifact(self, engine: str, params: EngineParams, stage: str, path: Path) -> Runner:
        """The runner of ``path`` on ``engine``, named ``<engine>:<stage>``; raises NotApplicable if it refuses."""

        def load() -> Runner:
            runner = ENGINES[engine].load(path, params, self.threads)
            runner.name = row_name(engine, stage)
            return runner

        return self._get((engine, str(path)), load)

    def _torch_args(self) -> tuple[Any, tuple[str, ...], str]:
        torch_runners.set_threads(self.threads)
        return self.source.module, self.source.input_names, self.source.output_name

    def _get(self, slot: tuple[str, str], build: Any) -> Runner:
        if slot not in self._runners:
            try:
                self._runners[slot] = build()
            except NotApplicable as refusal:
                self._runners[slot] = refusal
        found = self._runners[slot]
        if isinstance(found, NotApplicable):
            raise found
        return found
