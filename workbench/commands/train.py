"""``workbench train``: train a model on the synthetic set (or print the held-out accuracy of weights already there)."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.errors import WorkbenchError


def main(args: argparse.Namespace) -> int:
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
