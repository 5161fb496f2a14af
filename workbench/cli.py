"""Command line: ``python -m workbench {run,bench,compare,sweep,train,schema} ...``; each command is a module of
``workbench.commands``.

User errors print one line and exit 2 (1 for failed checks); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import time
from pathlib import Path

from workbench import environment
from workbench.errors import WorkbenchError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="A PyTorch -> ONNX optimization workbench.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
        sub.set_defaults(module=name)
        return sub

    run = command("run", "run a recipe: export, optimize, quantize, validate on every engine, benchmark, report")
    run.add_argument("recipe", type=Path, help="the recipe YAML file (e.g. recipes/int8.yaml)")
    run.add_argument("--force", action="store_true", help="redo every stage, check and benchmark, ignoring the cache")
    run.add_argument(
        "--threads", type=int, default=None, help="threads for every engine (default: the recipe's, else all cores)"
    )
    run.add_argument("--no-bench", action="store_true", help="skip the benchmarks")
    run.add_argument("--rebench", action="store_true", help="measure the benchmarks again instead of using the cache")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument(
        "--ray", metavar="ADDRESS", default=None,
        help="split each validation pass across workers of this Ray cluster (auto: the one started on this machine); "
        "benchmarks stay in this process",
    )
    run.add_argument(
        "--workers", type=int, default=None,
        help="Ray workers for --ray (default: one per CPU of the nodes of this machine's CPU type, or of every node "
        "when no node advertises a type)",
    )

    bench = command("bench", "time ONNX files on one engine (and, given a recipe, beside the PyTorch references)")
    bench.add_argument("files", type=Path, nargs="+", metavar="ARTIFACT.onnx", help="the ONNX files to time")
    bench.add_argument("--recipe", type=Path, help="take the model, input layout and bench settings from this recipe")
    bench.add_argument("--threads", type=int, default=None, help="threads for every contender (default: all cores)")
    bench.add_argument("--runtime", default="onnxruntime", help="the engine to run the files on (default: onnxruntime)")
    bench.add_argument("--budget", type=float, default=None, help="seconds per case (default: the recipe's, else 1)")
    bench.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="ids are drawn from [0, N) (default: the file's vocab_size metadata, else 1000)",
    )

    compare = command("compare", "compare the figures of several runs' report folders, with the change between them")
    compare.add_argument("reports", type=Path, nargs="+", metavar="REPORT_DIR", help="report folders (reports/<name>)")
    compare.add_argument(
        "--format", choices=("table", "md", "csv", "json"), default="table",
        help="table (the terminal, default), md, csv or json (for scripts)",
    )

    sweep = command("sweep", "run several recipes as tasks (in this process, or on Ray), then one table across them")
    sweep.add_argument("recipes", type=Path, nargs="+", metavar="RECIPE", help="the recipe YAML files")
    sweep.add_argument(
        "--ray", metavar="auto|ADDRESS", default=None,
        help="run the tasks on a Ray cluster: auto (the one on this machine) or its address (pip install -e '.[ray]')",
    )
    sweep.add_argument(
        "--machines", metavar="TYPE,...", default=None,
        help="validate and time each recipe on each CPU type, e.g. avx512_vnni,avx2 (Ray nodes advertising the type; "
        "without --ray: this machine's type only)",
    )
    sweep.add_argument("--force", action="store_true", help="redo every stage, check and benchmark, ignoring the cache")
    sweep.add_argument("--threads", type=int, default=None, help="threads for every engine (default: the recipe's)")
    sweep.add_argument("--no-bench", action="store_true", help="validation only: each task takes one CPU, not a node")

    command("schema", "print the JSON Schema of metrics.json (the run model every report is rendered from)")

    train = command("train", "train a model on the synthetic set and write its state_dict")
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
    train.add_argument("--seed", type=int, default=0, help="the seed of the data streams and the initial weights")
    train.add_argument(
        "--max-len", type=int, default=None, help="longest training sample (default: the class's TRAIN, else 256)"
    )
    train.add_argument("--held-out", type=int, default=1000, help="held-out samples for the accuracy figure")
    train.add_argument("--hidden-dim", type=int, default=None, help="override the model's hidden_dim (small runs)")
    train.add_argument("--quiet", action="store_true", help="no progress display")
    return parser


def _run(args: argparse.Namespace) -> int:
    from workbench import recipe as recipes
    from workbench.commands.run import run_recipe

    parsed = recipes.load(args.recipe)
    if args.threads is not None and args.threads < 1:
        raise WorkbenchError("--threads must be >= 1")
    if args.workers is not None and (args.ray is None or args.workers < 1):
        raise WorkbenchError("--workers needs --ray and must be >= 1")
    joined, spread = False, None
    if args.ray is not None:
        from workbench import cluster
        from workbench.spread import Spread

        joined = cluster.connect(args.ray)
        spread = Spread(workers=args.workers)
        try:
            spread.place()  # too many workers for the nodes of this type: one line now, not a wait for ever
        except WorkbenchError:
            if joined:
                cluster.disconnect()
            raise
    try:
        return run_recipe(
            parsed,
            force=args.force,
            threads=args.threads,
            quiet=args.quiet,
            bench=not args.no_bench,
            rebench=args.rebench,
            started=args.started,
            spread=spread,
        )
    finally:
        if joined:
            cluster.disconnect()


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    environment.bound_shape_caches()  # before any torch kernel: recorded in every report and benchmark key
    args = _parser().parse_args(argv)
    args.started = started
    try:
        if args.module == "run":
            return _run(args)
        return importlib.import_module(f"workbench.commands.{args.module}").main(args)
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
