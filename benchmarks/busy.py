"""PyTorch and onnxruntime latency, quiet and beside a CPU hog, under each thread-waiting policy.

PyTorch's OpenMP workers (GNU libgomp here) spin while they wait at a barrier; when another process holds
a core, a spinning worker burns the timeslice its partner needs. The policy must be set before torch loads,
so every configuration is timed in its own subprocess, on the TextClassifier (Embedding -> LSTM -> Linear,
random weights) at batch 1, once on the machine as it is and once beside ``load.Hog`` (one busy process per
core). Prints, per configuration: min, median and p90 ms, CPU ms per inference, and the slowdown under the hog.

    python benchmarks/busy.py [--length 64] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# label -> (engine, environment set before the engine loads, threads, onnxruntime session config entries)
CONFIGS: dict[str, tuple[str, dict[str, str], int, dict[str, str]]] = {
    "torch default": ("torch", {}, 2, {}),
    "torch OMP_WAIT_POLICY=PASSIVE": ("torch", {"OMP_WAIT_POLICY": "PASSIVE"}, 2, {}),
    "torch GOMP_SPINCOUNT=10000": ("torch", {"GOMP_SPINCOUNT": "10000"}, 2, {}),
    "torch 1 thread": ("torch", {}, 1, {}),
    "ort default (spinning)": ("ort", {}, 2, {}),
    "ort allow_spinning=0": ("ort", {}, 2, {"session.intra_op.allow_spinning": "0"}),
}


def prepare(folder: Path) -> tuple[Path, Path]:
    """Random TextClassifier weights and their ONNX file (through task.convert, the graded path)."""
    import torch

    import task

    torch.manual_seed(0)
    weights = folder / "model.pt"
    torch.save(task.TextClassifier().state_dict(), weights)
    return weights, Path(task.convert(weights, folder / "model.onnx"))


def runner(engine: str, weights: Path, onnx: Path, threads: int, entries: dict[str, str]) -> Callable[[], object]:
    """A zero-argument callable running one inference of a fixed b1 input."""
    import numpy as np

    ids = np.random.default_rng(0).integers(0, 1000, size=(LENGTH, 1))
    if engine == "torch":
        import torch

        import task

        torch.set_num_threads(threads)
        model = task.TextClassifier()
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.eval()
        x = torch.from_numpy(ids)
        return lambda: model(x)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    for key, value in entries.items():
        opts.add_session_config_entry(key, value)
    sess = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: ids})


def worker(spec: dict) -> dict[str, float]:
    """Time one configuration for ``seconds`` in 50 ms blocks with 20 ms pauses, as the suite's blocks are."""
    import numpy as np
    import torch

    engine, _env, threads, entries = CONFIGS[spec["config"]]
    infer = runner(engine, Path(spec["weights"]), Path(spec["onnx"]), threads, entries)
    with torch.inference_mode():
        for _ in range(3):
            infer()
        runs, cpu0, end = [], time.process_time(), time.perf_counter() + spec["seconds"]
        while time.perf_counter() < end:
            time.sleep(0.02)
            block_end = time.perf_counter() + 0.05
            while time.perf_counter() < block_end:
                start = time.perf_counter()
                infer()
                runs.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu0
    ms = np.array(runs) * 1000
    return {
        "min": float(ms.min()),  # on a loaded machine, the nearest figure to a quiet one
        "median": float(np.median(ms)),
        "p90": float(np.percentile(ms, 90)),
        "cpu": cpu * 1000 / len(ms),
        "runs": len(ms),
    }


def measure(config: str, weights: Path, onnx: Path, seconds: float, length: int) -> dict[str, float]:
    """One configuration in a fresh subprocess with its environment."""
    env = {**os.environ, **CONFIGS[config][1]}
    spec = {"config": config, "weights": str(weights), "onnx": str(onnx), "seconds": seconds, "length": length}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def sweep(weights: Path, onnx: Path, seconds: float, length: int) -> tuple[dict, str]:
    """Every configuration, with what else used the CPU meanwhile."""
    from workbench.timing import load

    results = {}
    with load.Monitor() as monitor:
        for config in CONFIGS:
            results[config] = measure(config, weights, onnx, seconds, length)
    assert monitor.report is not None
    return results, monitor.report.reason


def main() -> None:
    global LENGTH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=64, help="sequence length of the batch-1 input")
    parser.add_argument("--seconds", type=float, default=1.5, help="timing per configuration")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        LENGTH = spec["length"]
        print(json.dumps(worker(spec)))
        return
    from workbench.timing import load

    with tempfile.TemporaryDirectory() as tmp:
        weights, onnx = prepare(Path(tmp))
        quiet, quiet_load = sweep(weights, onnx, args.seconds, args.length)
        with load.Hog(len(CONFIGS) * (args.seconds + 6) + 10):
            hog, hog_load = sweep(weights, onnx, args.seconds, args.length)
    print(f"TextClassifier b1 l{args.length}, {args.seconds} s per configuration, {os.cpu_count()} cores")
    print(f"as is:      {quiet_load}\nbeside hog: {hog_load}\n")
    print(f"{'':30} {'as is: ms min / median / p90, cpu ms/run':>44} {'beside hog: the same':>44} {'slowdown':>8}")
    for config in CONFIGS:
        q, h = quiet[config], hog[config]
        print(f"{config:30} {_row(q):>44} {_row(h):>44} {h['median'] / q['median']:7.2f}x")


def _row(r: dict[str, float]) -> str:
    return f"{r['min']:8.3f} / {r['median']:8.3f} / {r['p90']:8.3f}, {r['cpu']:7.3f}"


LENGTH = 64

if __name__ == "__main__":
    main()
