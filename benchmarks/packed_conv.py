"""Prepacked oneDNN convolutions in the compiled inference pass, against ``at::conv2d``
(``--option fused``: fused merges and gate pooling, against separate ones).

The compiled pass (``csrc/resnet_forward.cpp``) runs each convolution of a channels_last batch
of two or more images on a weight reordered once for oneDNN (``csrc/packed_conv.cpp``), where
``at::conv2d`` reorders the plain weight at every call. This times the synthetic benchmark's
fused pair (gated model calibrated to an execution rate, dense counterpart with the same
weights; ``aignet bench``) with packing on and off in one process, interleaved, median of the
repetitions: ms per image of each, and the sparse/dense time ratio under each. Logits and
decisions are bitwise the same either way (``tests/engine/test_compiled_forward.py``). Prints
JSON and writes benchmarks/results/packed_conv_cpu.json. Run on an otherwise idle machine.

With ``--option fused`` the option is ``set_merge_fusion``: a dense block's add and ReLU in one
pass, and every merge summing its output for the next gate, which then pools only the images
whose map changed (a closed gate on an identity shortcut leaves an image's map, and so its
sums, as they were). Off: ATen's add and ReLU, and every gate pools its whole input.

    python benchmarks/packed_conv.py
    python benchmarks/packed_conv.py --rates 0.6 --batch-sizes 32 --reps 5
    python benchmarks/packed_conv.py --option fused --batch-sizes 1,32,256
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
SWITCHES = {"packed": "set_packed_convolutions", "fused": "set_merge_fusion"}


def _seconds(model: torch.nn.Module, batches: list[torch.Tensor], switch, on: bool) -> float:
    switch(on)
    start = time.perf_counter()
    for x in batches:
        model(x)
    return time.perf_counter() - start


def measure(model_name: str, rate: float, batch: int, reps: int, option: str = "packed") -> dict:
    """One row: ms per image of dense and sparse with a compiled-pass option (``packed``:
    ``set_packed_convolutions``, ``fused``: ``set_merge_fusion``) off and on, and the ratios."""
    switch = getattr(kernels.load(), SWITCHES[option])
    gated, dense, calib = synthetic_models(model_name, rate)
    runners = {"dense": fuse(dense, True), "sparse": fuse(gated, True)}
    images = calib[:IMAGES].contiguous(memory_format=torch.channels_last)
    batches = list(images.split(batch))
    keys = [(name, on) for name in runners for on in (False, True)]
    times: dict[tuple[str, bool], list[float]] = {k: [] for k in keys}
    with torch.inference_mode():
        executed = runners["sparse"](images).gates.mean().item()
        for rep in range(reps + 1):  # the first repetition warms up
            for name, on in keys[rep % 4:] + keys[:rep % 4]:
                times[name, on].append(_seconds(runners[name], batches, switch, on))
    switch(True)
    ms = {k: statistics.median(v[1:]) * 1e3 / IMAGES for k, v in times.items()}
    return {"model": model_name, "batch": batch, "target_rate": rate,
            "execution_rate": round(executed, 4),
            "dense_ms_per_image": round(ms["dense", False], 4),
            f"dense_{option}_ms_per_image": round(ms["dense", True], 4),
            "sparse_ms_per_image": round(ms["sparse", False], 4),
            f"sparse_{option}_ms_per_image": round(ms["sparse", True], 4),
            "dense_speedup": round(ms["dense", False] / ms["dense", True], 3),
            "sparse_speedup": round(ms["sparse", False] / ms["sparse", True], 3),
            "sparse_over_dense": round(ms["sparse", False] / ms["dense", False], 3),
            f"sparse_over_dense_{option}": round(ms["sparse", True] / ms["dense", True], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="aig_resnet110_cifar", help="synthetic gated model")
    parser.add_argument("--rates", default="0.3,0.6,0.9", help="execution rates, comma-separated")
    parser.add_argument("--batch-sizes", default="8,32,256", help="comma-separated")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--option", choices=sorted(SWITCHES), default="packed",
                        help="the option compared off and on: packed convolutions, or fused "
                             "merges that sum the next gate's input as they write it")
    parser.add_argument("--out", help="default: benchmarks/results/<option>_cpu.json")
    args = parser.parse_args()
    if kernels.load() is None:
        parser.exit(2, "packed_conv.py: error: aignet's compiled kernels are not available "
                       "(AIGNET_KERNELS=off, or no C++ compiler and ninja); nothing to compare\n")
    torch.set_num_threads(args.threads)
    rows = [measure(args.model, float(r), int(b), args.reps, args.option)
            for r in args.rates.split(",") for b in args.batch_sizes.split(",")]
    default = "packed_conv_cpu.json" if args.option == "packed" else f"{args.option}_merge_cpu.json"
    write_benchmark(args.out or RESULTS / default, rows, args.threads)


if __name__ == "__main__":
    main()
