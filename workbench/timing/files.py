"""``workbench bench``: time ONNX files from anywhere on one engine (and, given a recipe, the PyTorch references)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.artifact import read_graph
from workbench.errors import InputError
from workbench.recipe import BenchSpec, InputSpec
from workbench.runtimes import DEFAULT_ENGINES, ENGINES, NotApplicable, Runner, row_name
from workbench.timing import measure, suite


def guess_inputs(path: Path) -> tuple[InputSpec, ...]:
    """Without a recipe: the file's inputs, fed by name (``*mask*`` a mask, ``*type*``/``*segment*`` zeros,
    else token ids) and laid out by their axis names (``batch``/``sequence``; unnamed: sequence first)."""
    import onnx

    graph = read_graph(path).graph
    weights = {init.name for init in graph.initializer}
    specs = []
    for value in graph.input:
        if value.name in weights:
            continue
        lowered = value.name.lower()
        feed = "mask" if "mask" in lowered else "zeros" if ("type" in lowered or "segment" in lowered) else "ids"
        dims = [d.dim_param for d in value.type.tensor_type.shape.dim]
        axes = ("batch", "sequence") if dims and dims[0] == "batch" else ("sequence", "batch")
        dtype = "int32" if value.type.tensor_type.elem_type == onnx.TensorProto.INT32 else "int64"
        specs.append(InputSpec(name=value.name, feed=feed, dtype=dtype, axes=axes))
    if [s.feed for s in specs].count("ids") != 1:
        raise InputError(f"{path}: cannot tell which input takes the token ids; give --recipe")
    return tuple(specs)


@dataclass(frozen=True)
class FilesResult:
    threads: int
    budget_seconds: float
    baseline: str
    cases: tuple[measure.Case, ...]
    timings: tuple[measure.Timing, ...]
    precisions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        speedups: dict[str, dict[str, float]] = {}
        for (row, case), value in measure.speedups(self.timings, self.baseline).items():
            speedups.setdefault(row, {})[case] = value
        return {
            "threads": self.threads,
            "budget_seconds": self.budget_seconds,
            "baseline": self.baseline,
            "cases": [c.__dict__ for c in self.cases],
            "timings": [t.to_dict() for t in self.timings],
            "speedup_vs_pytorch_fp32": speedups,
            "precisions": self.precisions,
        }


def bench_files(
    paths: Sequence[Path],
    spec: BenchSpec,
    inputs: Sequence[InputSpec],
    *,
    engine: str,
    threads: int,
    vocab_size: int,
    references: Sequence[Runner] = (),
) -> FilesResult:
    """Each file on ``engine``; a file the engine cannot load, or whose inputs differ from ``inputs``, is an
    InputError naming it."""
    names = [path.name for path in paths]
    names = names if len(set(names)) == len(names) else [str(path) for path in paths]
    contenders = list(references)
    for name, path in zip(names, paths):
        spec_engine = ENGINES[engine]
        try:
            runner = spec_engine.load(path, spec_engine.params(), threads)
        except NotApplicable as refusal:
            raise InputError(f"{path}: {refusal}") from None
        runner.check_inputs(tuple(i.name for i in inputs), path)
        runner.name = name if engine == DEFAULT_ENGINES[0] else row_name(engine, name)
        contenders.append(runner)
    timings = measure.run_cases(
        contenders, suite.cases(spec), inputs, vocab_size=vocab_size, budget_s=spec.budget_seconds
    )
    return FilesResult(
        threads,
        spec.budget_seconds,
        contenders[0].name,
        tuple(suite.cases(spec)),
        tuple(timings),
        {c.name: c.precision for c in contenders},
    )
