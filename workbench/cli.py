"""Command line: ``python -m workbench {run,bench,compare,train} ...``.

User errors print one line and exit 2 (1 for failed checks); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
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
    run.add_argument("--no-bench", action="store_true", help="skip the benchmarks (they are never cached)")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.set_defaults(handler=_run)

    bench = commands.add_parser("bench", help="time ONNX files (and, given a recipe, the PyTorch references)")
    bench.add_argument("files", type=Path, nargs="+", metavar="ARTIFACT.onnx")
    bench.add_argument("--recipe", type=Path, help="take the model, input layout and bench settings from this recipe")
    bench.add_argument("--threads", type=int, default=None, help="threads for every contender (default: all cores)")
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
        "--out", type=Path, default=Path("model.pt"), help="where to write the weights (default: model.pt)"
    )
    train.add_argument("--model", default="task:TextClassifier", help="the nn.Module as module:Class")
    train.add_argument("--steps", type=int, default=1500, help="optimizer steps (default: 1500)")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-len", type=int, default=256, help="longest training sample (default: 256)")
    train.add_argument("--held-out", type=int, default=1000, help="held-out samples for the accuracy figure")
    train.add_argument("--hidden-dim", type=int, default=None, help="override the model's hidden_dim (small runs)")
    train.add_argument("--quiet", action="store_true", help="no progress display")
    train.set_defaults(handler=_train)
    return parser


def _train(args: argparse.Namespace) -> int:
    from workbench.train import TrainConfig, train

    if args.steps < 1 or args.batch_size < 1 or args.max_len < 8 or args.held_out < 1:
        raise WorkbenchError("--steps, --batch-size and --held-out must be >= 1, --max-len >= 8")
    kwargs = {} if args.hidden_dim is None else {"hidden_dim": args.hidden_dim}
    config = TrainConfig(
        model_class=args.model,
        model_kwargs=kwargs,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        max_len=args.max_len,
        held_out=args.held_out,
    )
    result = train(config, args.out, search_path=Path.cwd(), progress=not args.quiet)
    print(
        f"wrote {result.path}: held-out accuracy {result.held_out_accuracy:.2%} on {config.held_out} samples "
        f"(seed {config.seed}, {result.steps} steps, final loss {result.final_loss:.4f})"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from workbench import recipe as recipes
    from workbench.runner import run_recipe

    parsed = recipes.load(args.recipe)
    if args.threads is not None and args.threads < 1:
        raise WorkbenchError("--threads must be >= 1")
    return run_recipe(parsed, force=args.force, threads=args.threads, quiet=args.quiet, bench=not args.no_bench)


def _bench(args: argparse.Namespace) -> int:
    import os

    from rich.console import Console

    from workbench import perf, pipeline, speed
    from workbench import recipe as recipes

    if (args.threads is not None and args.threads < 1) or (args.budget is not None and args.budget <= 0):
        raise WorkbenchError("--threads must be >= 1 and --budget > 0")
    for path in args.files:
        if not path.is_file():
            raise WorkbenchError(f"{path}: file not found")
    parsed = recipes.load(args.recipe) if args.recipe else None
    spec = parsed.settings.bench if parsed else recipes.BenchSpec()
    if args.budget is not None:
        spec = spec.model_copy(update={"budget_seconds": args.budget})
    threads = args.threads or (parsed.settings.threads if parsed else None) or os.cpu_count() or 1
    module = pipeline.torch_source(parsed)[0].module if parsed else None
    layout = parsed.model.input if parsed else None
    vocab = args.vocab_size or (layout.vocab_size if layout else _vocab_from_metadata(args.files[0]))
    figures = perf.bench_files(
        args.files,
        spec,
        threads=threads,
        vocab_size=vocab,
        batch_first=bool(layout and layout.axes[0] == "batch"),
        module=module,
        input_name=layout.name if layout else None,
    )
    header, rows = speed.rows(figures)
    Console().print(
        speed.terminal_table(header, rows, f"{threads} threads; x: {figures['baseline']}'s median over each")
    )
    return 0


def _vocab_from_metadata(path: Path) -> int:
    import onnx

    try:
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as exc:  # protobuf decode errors
        raise WorkbenchError(f"{path}: not a readable ONNX model: {exc}") from None
    return int(meta.get("vocab_size", 1000))


def _compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from workbench import compare, speed

    header, rows = compare.table(args.reports)
    Console().print(speed.terminal_table(header, rows, "compare"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
