"""What every step of a run shares: the recipe, the cache, the runners, the evaluation set, the tool versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from workbench import environment
from workbench.evaluation import Evaluation, evaluation_of
from workbench.progress import Progress
from workbench.recipe import Recipe
from workbench.runtimes.pool import Pool
from workbench.spread import Spread
from workbench.stages import TorchSource
from workbench.store.cache import Cache

CACHE_DIR = ".workbench-cache"


def cache_for(recipe: Recipe) -> Cache:
    """The recipe's cache: ``<root>/.workbench-cache`` unless the recipe names another root (a folder or URL)."""
    root = recipe.settings.cache
    if root is None:
        return Cache(recipe.root / CACHE_DIR)
    return Cache.open(root if "://" in root else recipe.resolve(root), mirror=recipe.root / CACHE_DIR)


@dataclass(eq=False)
class RunContext:
    """One run's shared state; built once by the command, passed to the pipeline and the benchmarks."""

    recipe: Recipe
    source: TorchSource
    model_key: str  # names exactly what the torch model is built from
    threads: int
    force: bool = False
    progress: Progress = field(default_factory=Progress)
    spread: Spread | None = None  # validation passes split across Ray workers (``run --ray``)

    @cached_property
    def cache(self) -> Cache:
        return cache_for(self.recipe)

    @cached_property
    def pool(self) -> Pool:
        return Pool(self.threads, self.source)

    @cached_property
    def evaluation(self) -> Evaluation:
        return evaluation_of(self.recipe)

    @cached_property
    def versions(self) -> dict[str, str]:
        """What the stages and the reference depend on (engines are keyed per check by their own version)."""
        return environment.tool_versions()

    @property
    def report_dir(self) -> Path:
        return self.recipe.report_dir
