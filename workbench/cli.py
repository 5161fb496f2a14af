"""Command line: ``python -m workbench {run,bench,compare,train} ...``.

User errors print one line and exit 2 (1 for failed checks); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
import time
from pathlib import Path

from workbench.errors import WorkbenchError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="A PyTorch -> ONNX optimization workbench.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a recipe: export, optimize, quantize, validate, report")
    run.add_argument("recipe", type=Path, help="the recipe YAML file (e.g. recipes/int8.yaml)")
    run.add_argument("--force", action="store_true", help="redo every stage and check, ignoring the cache")
    run.add_argument(
        "--threads", type=int, default=None, help="threads for torch and onnxruntime (default: recipe, else all cores)"
    )
    run.add_argument("--no-bench", action="store_true", help="skip the benchmarks")
    run.add_argument("--rebench", action="store_true", help="measure the benchmarks again instead of using the cache")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.set_defaults(handler=_run)

    bench = commands.add_parser("bench", help="time ONNX files (and, given a recipe, the PyTorch references)")
    bench.add_argument("files", type=Path, nargs="+", metavar="ARTIFACT.onnx")
    bench.add_argument("--recipe", type=Path, help="take the model, input layout and bench settings from this recipe")
    bench.add_argument("--threads", type=int, default=None, help="threads for every contender (default: all cores)")
    bench.add_argument("--runtime", default="onnxruntime", help="the engine to run the files on (default: onnxruntime)")
    bench.add_argument("--budget", type=float, default=None, help="seconds per case (default: recipe's, else 1)")
    bench.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="ids are drawn from [0, N) (default: the file's vocab_size metadata, else 1000)",
    )
    bench.set_defaults(handler=_bench)

    compare = commands.add_parser("compare", help="one table across report folders of several runs")
    compare.add_argument("reports", type=Path, nargs="+", metavar="REPORT_DIR")
    compare.set_defaults(handler=_compare)

    train = commands.add_parser("train", help="train a model on the synthetic set and write its state_dict")
    train.add_argument(
        "--evaluate",
        action="store_true",
        help="train nothing: print the held-out accuracy of the weights already there (the figure training printed)",
    )
    train.add_argument(
        "--recipe",
        type=Path,
        help="take the model (class, kwargs, inputs, vocabulary), the weights path and the held-out lengths from it",
    )
    train.add_argument(
        "--out", type=Path, default=None, help="where to write the weights (default: the recipe's, else model.pt)"
    )
    train.add_argument("--model", default=None, help="the nn.Module as module:Class (default: task:TextClassifier)")
    train.add_argument("--steps", type=int, default=None, help="default: the class's TRAIN, else 1500")
    train.add_argument("--batch-size", type=int, default=None, help="default: the class's TRAIN, else 64")
    train.add_argument("--lr", type=float, default=None, help="default: the class's TRAIN, else 0.001")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--max-len", type=int, default=None, help="longest training sample (default: the class's TRAIN, else 256)"
    )
    train.add_argument("--held-out", type=int, default=1000, help="held-out samples for the accuracy figure")
    train.add_argument("--hidden-dim", type=int, default=None, help="override the model's hidden_dim (small runs)")
    train.add_argument("--quiet", action="store_true", help="no progress display")
    train.set_defaults(handler=_train)
    return parser


def _train(args: argparse.Namespace) -> int:
    from workbench import recipe as recipes
    from workbench.train import TrainConfig, class_defaults, evaluate, train

    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size), ("--held-out", args.held_out)):
        if value is not None and value < 1:
            raise WorkbenchError(f"{flag} must be >= 1, got {value}")
    if args.max_len is not None and args.max_len < 8:
        raise WorkbenchError(f"--max-len must be >= 8, got {args.max_len}")
    settings: dict = {"model_class": args.model or TrainConfig.model_class}
    search_path, out = Path.cwd(), Path("model.pt")
    if args.recipe is not None:
        if args.model is not None or args.hidden_dim is not None:
            raise WorkbenchError(
                "--model and --hidden-dim do not go with --recipe: its model section sets the class and its sizes"
            )
        parsed = recipes.load(args.recipe)
        spec, search_path, out = parsed.model, parsed.root, parsed.resolve(parsed.model.weights)
        settings.update(model_class=spec.class_, model_kwargs=dict(spec.kwargs), inputs=spec.inputs)
        settings.update(vocab_size=spec.vocab_size)
        synthetic = parsed.settings.data.synthetic
        if synthetic is not None:
            settings.update(held_out_lengths=(synthetic.min_len, synthetic.max_len))
    if args.hidden_dim is not None:
        settings.update(model_kwargs={"hidden_dim": args.hidden_dim})
    settings.update(class_defaults(settings["model_class"], search_path=search_path))
    flags = {"steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.lr, "max_len": args.max_len}
    settings.update({key: value for key, value in flags.items() if value is not None})
    config = TrainConfig(**settings, seed=args.seed, held_out=args.held_out)
    low, high = config.held_out_range
    if args.evaluate:
        weights = args.out or out
        accuracy = evaluate(config, weights, search_path=search_path)
        print(
            f"{weights}: held-out accuracy {accuracy:.2%} on {config.held_out} samples of lengths {low}-{high} "
            f"(seed {config.seed})"
        )
        return 0
    result = train(config, args.out or out, search_path=search_path, progress=not args.quiet)
    print(
        f"wrote {result.path}: held-out accuracy {result.held_out_accuracy:.2%} on {config.held_out} samples "
        f"of lengths {low}-{high} (seed {config.seed}, {result.steps} steps of {config.batch_size}, "
        f"training lengths {config.min_len}-{config.max_len}, lr {config.learning_rate:g}, "
        f"final loss {result.final_loss:.4f})"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from workbench import recipe as recipes
    from workbench.app import run_recipe

    parsed = recipes.load(args.recipe)
    if args.threads is not None and args.threads < 1:
        raise WorkbenchError("--threads must be >= 1")
    return run_recipe(
        parsed,
        force=args.force,
        threads=args.threads,
        quiet=args.quiet,
        bench=not args.no_bench,
        rebench=args.rebench,
        started=args.started,
    )


def _bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from workbench import recipe as recipes
    from workbench import environment
    from workbench.model import torch_source
    from workbench.render import speed, terminal
    from workbench.runtimes import ENGINES
    from workbench.runtimes.pool import Pool
    from workbench.timing.files import bench_files, guess_inputs

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
    spec = parsed.settings.bench if parsed else recipes.BenchSpec()
    if args.budget is not None:
        spec = spec.model_copy(update={"budget_seconds": args.budget})
    threads = environment.threads_for(parsed, args.threads)
    references = []
    if parsed:
        pool = Pool(threads, torch_source(parsed)[0])
        references = [pool.reference(), pool.torch_int8()]
    inputs = parsed.model.inputs if parsed else guess_inputs(args.files[0])
    vocab = args.vocab_size or (parsed.model.vocab_size if parsed else _vocab_from_metadata(args.files[0]))
    figures = bench_files(
        args.files, spec, inputs, engine=args.runtime, threads=threads, vocab_size=vocab, references=references
    ).to_dict()
    header, rows = speed.rows(figures)
    Console().print(terminal.table(header, rows, f"{threads} threads; x: {figures['baseline']}'s median over each"))
    return 0


def _vocab_from_metadata(path: Path) -> int:
    from workbench.artifact import read_graph

    meta = {p.key: p.value for p in read_graph(path).metadata_props}
    return int(meta.get("vocab_size", 1000))


def _compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from workbench import runs_diff
    from workbench.render import terminal

    header, rows = runs_diff.table(args.reports)
    Console().print(terminal.table(header, rows, "compare"))
    return 0


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = _parser().parse_args(argv)
    args.started = started
    try:
        return args.handler(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG):
            raise
        print(f"error: {exc.filename or ''}: {exc.strerror}; nothing was published", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the previous report is unchanged", file=sys.stderr)
        return 130
