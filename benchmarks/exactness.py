"""How far onnxruntime's fp32 LSTM is from PyTorch, and both from a float64 PyTorch run.

    python benchmarks/exactness.py [--samples 2000] [--threads N] [--check-readme]

Prints the largest and mean absolute differences on the synthetic evaluation set, batched by length
and one sample at a time, and how many samples differ by more than 1e-5. The ONNX file is the one
``task.convert()`` writes; every model runs through the workbench's runners (``workbench.runtimes``).
Figures for ``--check-readme`` (see benchmarks/check_readme.py): ``largest logit``, and for each row
``<row> max``, ``<row> mean``, ``<row> over 1e-5`` with the row names printed below.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import check_readme  # noqa: E402
import task  # noqa: E402
from workbench import data  # noqa: E402
from workbench.feeds import FeedSpec, InputSpec  # noqa: E402
from workbench.runtimes import onnxruntime as ort_runners  # noqa: E402
from workbench.runtimes import torch as torch_runners  # noqa: E402

INPUTS = (InputSpec(name=task.INPUT_NAME, feed="ids", dtype="int64", axes=("sequence", "batch")),)  # task.py's file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--weights", type=Path, default=ROOT / "model.pt")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--check-readme", action="store_true", help="compare the figures with the README's claims")
    args = parser.parse_args()
    torch_runners.set_threads(args.threads)
    model = task.build_model(task.load_state_dict(args.weights))
    names = (task.INPUT_NAME,), task.OUTPUT_NAME
    fp32 = torch_runners.fp32("pytorch fp32", model, *names)
    fp64 = torch_runners.fp32("pytorch float64", copy.deepcopy(model).double(), *names)
    with tempfile.TemporaryDirectory() as folder:
        onnx = ort_runners.load_file(Path(task.convert(args.weights, Path(folder) / "m.onnx")), args.threads)
    onnx.check_inputs(tuple(i.name for i in INPUTS), "task.convert()")
    feed = FeedSpec(INPUTS, vocab_size=model.embedding.num_embeddings)
    samples = data.synthetic(args.samples, seed=1234, max_len=256)
    batched_t, batched_o, single_t, single_o, exact = [], [], [], [], []
    for batch in data.batches(samples, max_batch=64):
        feeds = feed.feeds(batch.tokens, batch.mask)
        batched_t.append(fp32.infer(feeds)[task.OUTPUT_NAME])
        exact.append(fp64.infer(feeds)[task.OUTPUT_NAME])
        batched_o.append(onnx.first_output(feeds))
        for row in range(len(batch.tokens)):  # tokens are [batch, length]: one row is one sample
            one = feed.feeds(batch.tokens[row : row + 1], batch.mask[row : row + 1])
            single_t.append(fp32.infer(one)[task.OUTPUT_NAME])
            single_o.append(onnx.first_output(one))
    bt, bo, st, so, ex = (
        np.concatenate(x).astype(np.float64) for x in (batched_t, batched_o, single_t, single_o, exact)
    )
    figures = {"largest logit": float(np.abs(ex).max())}
    print(f"{args.samples} samples, lengths 8-256, largest |logit| {figures['largest logit']:.2f}")
    rows = [
        ("onnxruntime vs torch, batched", bo, bt),
        ("onnxruntime vs torch, one at a time", so, st),
        ("torch fp32 vs torch float64", bt, ex),
        ("onnxruntime vs torch float64", bo, ex),
    ]
    for name, a, b in rows:
        diff = np.abs(a - b)
        over = int((diff.max(axis=1) > 1e-5).sum())
        figures.update(
            {f"{name} max": float(diff.max()), f"{name} mean": float(diff.mean()), f"{name} over 1e-5": over}
        )
        print(f"{name:<40} max {diff.max():.2e}  mean {diff.mean():.2e}  samples over 1e-5: {over}")
    return check_readme.verify(figures) if args.check_readme else 0


if __name__ == "__main__":
    sys.exit(main())
