"""``workbench bench``: time ONNX files from anywhere on one engine (and, given a recipe, the PyTorch references)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from workbench import environment, ops
from workbench.artifact import read_graph
from workbench.errors import InputError, WorkbenchError
from workbench.feeds import Feed, FeedSpec, InputSpec, IntType
from workbench.precision import FP32, INT8
from workbench.recipe import BenchSpec
from workbench.recipe_checks import cut_bench
from workbench.results import Bench, Case, Contender
from workbench.runtimes import DEFAULT_ENGINES, ENGINES, REFERENCE, TORCH, NotApplicable, Runner, row_name
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
        feed: Feed = "mask" if "mask" in lowered else "zeros" if ("type" in lowered or "segment" in lowered) else "ids"
        dims = [d.dim_param for d in value.type.tensor_type.shape.dim]
        axes = ("batch", "sequence") if dims and dims[0] == "batch" else ("sequence", "batch")
        dtype: IntType = "int32" if value.type.tensor_type.elem_type == onnx.TensorProto.INT32 else "int64"
        specs.append(InputSpec(name=value.name, feed=feed, dtype=dtype, axes=axes))
    if [s.feed for s in specs].count("ids") != 1:
        raise InputError(f"{path}: cannot tell which input takes the token ids; give --recipe")
    return tuple(specs)


def bench_files(
    paths: Sequence[Path], spec: BenchSpec, feed: FeedSpec, *, engine: str, threads: int, references: Sequence[Runner] = ()
) -> Bench:
    """Each file on ``engine`` beside the references; a file the engine cannot load, or whose inputs differ from
    the feed's, is an InputError naming it."""
    names = [path.name for path in paths]
    names = names if len(set(names)) == len(names) else [str(path) for path in paths]
    runners = list(references)
    contenders = [Contender(row=r.name, engine=TORCH, stage=None, precision=FP32 if r.name == REFERENCE else INT8,
                            ran_as=r.precision) for r in references]
    spec_engine = ENGINES[engine]
    for name, path in zip(names, paths):
        try:
            runner = spec_engine.load(path, spec_engine.params(), threads)
        except NotApplicable as refusal:
            raise InputError(f"{path}: {refusal}") from None
        runner.check_inputs(feed.names, path)
        runner.name = name if engine == DEFAULT_ENGINES[0] else row_name(engine, name)
        quantized = ops.int8_summary(ops.op_counts(path)) != "fp32"
        runners.append(runner)
        contenders.append(Contender(row=runner.name, engine=engine, stage=path.stem,
                                    precision=INT8 if quantized else FP32, ran_as=runner.precision))
    cases = suite.cases(spec)
    timings, loads = measure.run_cases(runners, cases, feed, budget_s=spec.budget_seconds, threads=threads)
    return Bench(
        loads=tuple(loads),
        fastest=tuple(suite.fastest_at(timings, case) for case in cases),
        threads=threads,
        budget_seconds=spec.budget_seconds,
        cases=tuple(cases),
        headline=Case(batch=1, length=max(spec.latency_lengths)),
        contenders=tuple(contenders),
        timings=tuple(timings),
        by_length=(),
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        measure_seconds=0.0,
    )


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from workbench import recipe as recipes
    from workbench.model import torch_source
    from workbench.render import speed, terminal
    from workbench.runtimes.pool import Pool

    if (args.threads is not None and args.threads < 1) or (args.budget is not None and args.budget <= 0):
        raise WorkbenchError("--threads must be >= 1 and --budget > 0")
    if args.runtime not in ENGINES:
        raise WorkbenchError(f"--runtime {args.runtime!r}: unknown engine; known engines: {', '.join(ENGINES)}")
    engine = ENGINES[args.runtime]
    if not engine.available():
        raise WorkbenchError(f"engine {args.runtime!r} is not installed; install it with: {engine.install}")
    for path in args.files:
        if not path.is_file():
            raise WorkbenchError(f"{path}: file not found")
    parsed = recipes.load(args.recipe) if args.recipe else None
    spec = parsed.settings.bench if parsed else BenchSpec()
    if args.budget is not None:
        spec = spec.model_copy(update={"budget_seconds": args.budget})
    threads = environment.threads_for(parsed, args.threads)
    references = []
    if parsed:
        pool = Pool(threads, torch_source(parsed)[0])
        references = [pool.reference(), pool.torch_int8()]
    inputs = parsed.model.inputs if parsed else guess_inputs(args.files[0])
    said = [] if parsed else [_workbench_metadata(path) for path in args.files]  # each file's metadata, read once
    written = _positive(said[0], "vocab_size") if said else None
    vocab = args.vocab_size or (parsed.model.vocab_size if parsed else written or 1000)
    # a recipe's lengths are fitted when it loads; files the workbench exported may name their longest input
    limits = [n for n in (_positive(meta, "max_length") for meta in said) if n]
    spec = cut_bench(spec, min(limits)) if limits else spec
    bench = bench_files(args.files, spec, FeedSpec(inputs, vocab), engine=args.runtime, threads=threads,
                        references=references)
    baseline = bench.contenders[0].row
    header, rows = speed.rows(bench, baseline=baseline)
    console = Console()
    for part in terminal.tables(header, rows, f"{threads} threads; x: {baseline}'s median over each row's", console.width):
        console.print(part)
    for line in speed.load_lines(bench):
        console.print(line.replace("**", ""), soft_wrap=True)
    return 0


def _workbench_metadata(path: Path) -> dict[str, str]:
    """The metadata the workbench's export wrote in the file; empty for a file another tool wrote."""
    meta = {p.key: p.value for p in read_graph(path).metadata_props}
    return meta if meta.get("producer", "").startswith("workbench ") else {}


def _positive(meta: dict[str, str], name: str) -> int | None:
    """A positive integer the metadata names (vocab_size, max_length); None when it does not say."""
    value = meta.get(name, "")
    return int(value) if value.isdecimal() and value.isascii() and int(value) > 0 else None
