"""How far onnxruntime's fp32 LSTM is from PyTorch, and both from a float64 PyTorch run.

    python benchmarks/exactness.py [--samples 2000]

Prints the largest and mean absolute differences on the synthetic evaluation set, batched by length
and one sample at a time, and how many samples differ by more than 1e-5.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import task  # noqa: E402
from workbench import data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--weights", type=Path, default=ROOT / "model.pt")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = task.build_model(task.load_state_dict(args.weights))
    model64 = copy.deepcopy(model).double()
    with tempfile.TemporaryDirectory() as folder:
        session = ort.InferenceSession(task.convert(args.weights, Path(folder) / "m.onnx"))
    samples = data.synthetic(args.samples, seed=1234, max_len=256)
    batched_t, batched_o, single_t, single_o, exact = [], [], [], [], []
    with torch.no_grad():
        for batch in data.batches(samples, max_batch=64):
            ids = torch.from_numpy(batch.ids)
            batched_t.append(model(ids).numpy())
            exact.append(model64(ids).numpy())
            batched_o.append(session.run(None, {"text": batch.ids})[0])
            for column in range(batch.ids.shape[1]):
                one = batch.ids[:, column : column + 1]
                single_t.append(model(torch.from_numpy(one)).numpy())
                single_o.append(session.run(None, {"text": one})[0])
    bt, bo, st, so, ex = (
        np.concatenate(x).astype(np.float64) for x in (batched_t, batched_o, single_t, single_o, exact)
    )
    print(f"{args.samples} samples, lengths 8-256, largest |logit| {np.abs(ex).max():.2f}")
    rows = [
        ("onnxruntime vs torch, batched", bo, bt),
        ("onnxruntime vs torch, one at a time", so, st),
        ("torch fp32 vs torch float64", bt, ex),
        ("onnxruntime vs torch float64", bo, ex),
    ]
    for name, a, b in rows:
        diff = np.abs(a - b)
        over = int((diff.max(axis=1) > 1e-5).sum())
        print(f"{name:<40} max {diff.max():.2e}  mean {diff.mean():.2e}  samples over 1e-5: {over}")


if __name__ == "__main__":
    main()
