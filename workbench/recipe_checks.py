"""Checks of a parsed recipe across its sections, made when it loads, before any work: each error names the
file, the key and what is allowed (``recipe.parse`` calls them in order)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import RecipeError
from workbench.stages import REGISTRY

if TYPE_CHECKING:
    from workbench.recipe import BenchSpec, Settings, StageConfig


def stage_order(path: Path, stages: Sequence[StageConfig]) -> None:
    """The first stage, and only it, starts from the torch model."""
    for index, config in enumerate(stages):
        takes_torch = REGISTRY[config.name].takes == "torch"
        if takes_torch != (index == 0):
            first = [name for name, spec in REGISTRY.items() if spec.takes == "torch"]
            raise RecipeError(
                f"{path}: stages[{index}]: {config.name!r} cannot stand here; the first stage, and only it, "
                f"must be one that starts from the torch model: {', '.join(first)}"
            )


def calibration(path: Path, settings: Settings, stages: Sequence[StageConfig]) -> None:
    """A stage that calibrates (in the chain or a search) needs samples apart from the evaluation set."""
    data = settings.data
    if data.calibration is not None or data.synthetic is not None:  # a file, or the synthetic set's own stream
        return
    named = [(f"stages[{i}]", c.name) for i, c in enumerate(stages) if REGISTRY[c.name].calibrates]
    if settings.search is not None:
        named += [("search.stage", name) for name in settings.search.stage if REGISTRY[name].calibrates]
    if named:
        where, name = named[0]
        raise RecipeError(
            f"{path}: data.calibration: {where} ({name}) calibrates on samples apart from the evaluation set; "
            "give data.calibration: a file in the evaluation set's format"
        )


def fit_lengths(path: Path, settings: Settings) -> Settings:
    """Every length the run feeds the model, within ``model.max_length`` (a folder's: from its config and tokenizer).

    A length the recipe leaves at its default is cut to the model's longest input (a BERT of 128 positions is
    timed at 128, not at the default 256 it cannot take); one the recipe sets beyond it is refused: the bench
    lengths, ship targets, the synthetic set's lengths, the exporter's example and ``data.max_length``."""
    model = settings.model
    longest = model.max_length
    if longest is None:
        return settings
    origin = "model.max_length" if model.huggingface is None else "model.max_length, by default the folder's"
    limit = f"the model takes at most {longest} tokens ({origin})"

    def fit(where: str, lengths: tuple[int, ...], chosen: bool) -> tuple[int, ...]:
        over = [n for n in lengths if n > longest]
        if over and chosen:
            said = over[0] if len(over) == 1 else over
            raise RecipeError(f"{path}: {where}: {said} is longer than {limit}")
        return tuple(dict.fromkeys(min(n, longest) for n in lengths))

    def fit_one(where: str, owner: Any, field: str) -> int:
        (length,) = fit(where, (getattr(owner, field),), field in owner.model_fields_set)
        return length

    bench = settings.bench
    fit("bench.latency_lengths", bench.latency_lengths, "latency_lengths" in bench.model_fields_set)
    fit("bench.chart_lengths", bench.chart_lengths, "chart_lengths" in bench.model_fields_set)
    fit_one("bench.throughput.length", bench.throughput, "length")
    targets, one = (settings.target, False) if isinstance(settings.target, list) else ([settings.target], True)
    for index, target in enumerate(targets):
        if target.length is not None:
            fit("target.length" if one else f"target[{index}].length", (target.length,), True)
    data = settings.data
    if data.max_length is not None:
        fit("data.max_length", (data.max_length,), True)
    if data.synthetic is not None:
        shortest = fit_one("data.synthetic.min_len", data.synthetic, "min_len")
        synthetic = {"max_len": fit_one("data.synthetic.max_len", data.synthetic, "max_len"), "min_len": shortest}
        data = data.model_copy(update={"synthetic": data.synthetic.model_copy(update=synthetic)})
    fitted = cut_bench(bench, longest)  # what is left over the limit are defaults: cut
    model = model.model_copy(update={"example_length": fit_one("model.example_length", model, "example_length")})
    return settings.model_copy(update={"bench": fitted, "data": data, "model": model})


def cut_bench(bench: BenchSpec, longest: int) -> BenchSpec:
    """The bench's lengths cut to ``longest``, repeats dropped; a chart keeps two lengths (half and all of it).
    Also what ``workbench bench`` does with an ONNX file whose metadata names its longest input."""

    def cut(lengths: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(dict.fromkeys(min(n, longest) for n in lengths))

    charted = cut(bench.chart_lengths)
    if len(charted) < 2:
        charted = tuple(dict.fromkeys((max(1, longest // 2), longest)))
    throughput = bench.throughput.model_copy(update={"length": min(bench.throughput.length, longest)})
    return bench.model_copy(
        update={"latency_lengths": cut(bench.latency_lengths), "chart_lengths": charted, "throughput": throughput}
    )
