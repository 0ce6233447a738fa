"""What one convolution call costs on sub-batches: the floor of sparse execution's overhead.

Sparse execution runs each block's convolutions on the images whose gate is open, so a batch of
B becomes sub-batches of about rate * B images. For the 3x3 convolutions of the three CIFAR
ResNet stages (BatchNorm folded: a bias; channels_last, fp32) this times ``F.conv2d`` at
sub-batch sizes 1 to 256 (median over repetitions), fits time = fixed + per_image * N over N >=
2, and derives the overhead that sub-batching alone puts on sparse execution at batch B: with k
open images drawn Binomial(B, rate) and time(k) interpolated between the measured sizes,
E[time(k)] / (rate * time(B)), 1.0 being none. Gates, gathers and everything else come on top.
Prints JSON and writes benchmarks/results/conv_call_cost_cpu.json. Run on an otherwise idle
machine.

    python benchmarks/conv_call_cost.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from aignet.engine.bench import write_benchmark

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = ((16, 32), (32, 16), (64, 8))  # (channels, spatial size) of the CIFAR stages
SIZES = (1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 19, 22, 26, 29, 32, 48, 64, 77, 96, 128, 154, 192,
         230, 256)


def conv_seconds(channels: int, size: int, reps: int, calls: int = 10) -> dict[int, float]:
    """Median seconds of one 3x3 convolution (with bias) per sub-batch size in ``SIZES``; the
    sizes take turns within each repetition, so a slow moment of the machine hits them all."""
    weight = torch.randn(channels, channels, 3, 3).contiguous(memory_format=torch.channels_last)
    bias = torch.randn(channels)
    inputs = {n: torch.randn(n, channels, size, size).contiguous(memory_format=torch.channels_last)
              for n in SIZES}
    times: dict[int, list[float]] = {n: [] for n in SIZES}
    with torch.inference_mode():
        for _ in range(reps + 1):  # the first repetition warms up
            for n, x in inputs.items():
                start = time.perf_counter()
                for _ in range(calls):
                    F.conv2d(x, weight, bias, padding=1)
                times[n].append((time.perf_counter() - start) / calls)
    return {n: statistics.median(t[1:]) for n, t in times.items()}


def fit(sizes: list[int], seconds: list[float]) -> tuple[float, float]:
    """Least-squares (fixed, per_image) of seconds = fixed + per_image * n."""
    mean_n, mean_t = statistics.fmean(sizes), statistics.fmean(seconds)
    slope = sum((n - mean_n) * (t - mean_t) for n, t in zip(sizes, seconds, strict=True)) / \
        sum((n - mean_n) ** 2 for n in sizes)
    return mean_t - slope * mean_n, slope


def interpolate(n: int, seconds: dict[int, float]) -> float:
    """Time at ``n`` images, linear between the measured sizes."""
    sizes = sorted(seconds)
    hi = next(s for s in sizes if s >= n)
    lo = max((s for s in sizes if s <= n), default=hi)
    return seconds[lo] if hi == lo else \
        seconds[lo] + (seconds[hi] - seconds[lo]) * (n - lo) / (hi - lo)


def sub_batch_overhead(seconds: dict[int, float], batch: int, rate: float) -> float:
    """E[time(k)] / (rate * time(batch)) for k ~ Binomial(batch, rate); no call when k = 0."""
    expected = sum(math.comb(batch, k) * rate ** k * (1 - rate) ** (batch - k)
                   * interpolate(k, seconds) for k in range(1, batch + 1))
    return expected / (rate * seconds[batch])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "conv_call_cost_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for channels, size in SHAPES:
        seconds = conv_seconds(channels, size, args.reps)
        fixed, per_image = fit([n for n in SIZES if n >= 2], [seconds[n] for n in SIZES if n >= 2])
        rows.append({
            "channels": channels, "size": size,
            "us_per_call": {n: round(1e6 * t, 1) for n, t in seconds.items()},
            "fixed_us": round(1e6 * fixed, 1), "per_image_us": round(1e6 * per_image, 2),
            "sub_batch_overhead": {f"batch {b}, rate {r}": round(
                sub_batch_overhead(seconds, b, r), 3) for b in (32, 256) for r in (0.3, 0.6, 0.9)}})
    write_benchmark(args.out, rows, args.threads)


if __name__ == "__main__":
    main()
