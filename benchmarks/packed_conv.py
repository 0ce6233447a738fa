"""Prepacked oneDNN convolutions in the compiled inference pass, against ``at::conv2d``.

The compiled pass (``csrc/resnet_forward.cpp``) runs each convolution of a channels_last batch
of two or more images on a weight reordered once for oneDNN (``csrc/packed_conv.cpp``), where
``at::conv2d`` reorders the plain weight at every call. This times the synthetic benchmark's
fused pair (gated model calibrated to an execution rate, dense counterpart with the same
weights; ``aignet bench``) with packing on and off in one process, interleaved, median of the
repetitions: ms per image of each, and the sparse/dense time ratio under each. Logits and
decisions are bitwise the same either way (``tests/engine/test_compiled_forward.py``). Prints
JSON and writes benchmarks/results/packed_conv_cpu.json. Run on an otherwise idle machine.

    python benchmarks/packed_conv.py
    python benchmarks/packed_conv.py --rates 0.6 --batch-sizes 32 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from aignet.engine.bench import synthetic_models, write_benchmark
from aignet.engine.fuse import fuse
from aignet.nn import kernels

RESULTS = Path(__file__).resolve().parent / "results"
IMAGES = 256  # timed per run at every batch size


def _seconds(model: torch.nn.Module, batches: list[torch.Tensor], packed: bool) -> float:
    kernels.load().set_packed_convolutions(packed)
    start = time.perf_counter()
    for x in batches:
        model(x)
    return time.perf_counter() - start


def measure(model_name: str, rate: float, batch: int, reps: int) -> dict:
    """One row: ms per image of dense and sparse, packing on and off, and the ratios."""
    gated, dense, calib = synthetic_models(model_name, rate)
    runners = {"dense": fuse(dense, True), "sparse": fuse(gated, True)}
    images = calib[:IMAGES].contiguous(memory_format=torch.channels_last)
    batches = list(images.split(batch))
    keys = [(name, packed) for name in runners for packed in (False, True)]
    times: dict[tuple[str, bool], list[float]] = {k: [] for k in keys}
    with torch.inference_mode():
        executed = runners["sparse"](images).gates.mean().item()
        for rep in range(reps + 1):  # the first repetition warms up
            for name, packed in keys[rep % 4:] + keys[:rep % 4]:
                times[name, packed].append(_seconds(runners[name], batches, packed))
    kernels.load().set_packed_convolutions(True)
    ms = {k: statistics.median(v[1:]) * 1e3 / IMAGES for k, v in times.items()}
    return {"model": model_name, "batch": batch, "target_rate": rate,
            "execution_rate": round(executed, 4),
            "dense_ms_per_image": round(ms["dense", False], 4),
            "dense_packed_ms_per_image": round(ms["dense", True], 4),
            "sparse_ms_per_image": round(ms["sparse", False], 4),
            "sparse_packed_ms_per_image": round(ms["sparse", True], 4),
            "dense_speedup": round(ms["dense", False] / ms["dense", True], 3),
            "sparse_speedup": round(ms["sparse", False] / ms["sparse", True], 3),
            "sparse_over_dense": round(ms["sparse", False] / ms["dense", False], 3),
            "sparse_over_dense_packed": round(ms["sparse", True] / ms["dense", True], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="aig_resnet110_cifar", help="synthetic gated model")
    parser.add_argument("--rates", default="0.3,0.6,0.9", help="execution rates, comma-separated")
    parser.add_argument("--batch-sizes", default="8,32,256", help="comma-separated")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", default=str(RESULTS / "packed_conv_cpu.json"))
    args = parser.parse_args()
    if kernels.load() is None:
        parser.exit(2, "packed_conv.py: error: aignet's compiled kernels are not available "
                       "(AIGNET_KERNELS=off, or no C++ compiler and ninja); nothing to compare\n")
    torch.set_num_threads(args.threads)
    rows = [measure(args.model, float(r), int(b), args.reps)
            for r in args.rates.split(",") for b in args.batch_sizes.split(",")]
    write_benchmark(args.out, rows, args.threads)


if __name__ == "__main__":
    main()
