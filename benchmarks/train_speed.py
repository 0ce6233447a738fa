"""Training throughput of AIG ResNets against the plain ResNet of the same depth.

One optimisation step (forward, loss, backward, SGD) on a fixed random CIFAR batch, channels_last,
in fp32 and under bf16 autocast. Dense and gated steps are interleaved and each ratio is the
median over repetitions of (dense time / AIG time), so a slow moment of the machine hits both.
Prints JSON and writes it to benchmarks/results/train_speed_cpu.json. ``AIGNET_KERNELS=off``
measures the PyTorch reference ops instead of the compiled kernels.

    python benchmarks/train_speed.py                          # ResNet-32 and -56, batch 128
    python benchmarks/train_speed.py --depths 110 --reps 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import aignet
from aignet.engine.bench import write_benchmark
from aignet.nn import kernels
from aignet.training.config import OptimConfig
from aignet.training.optim import build_optimizer

RESULTS = Path(__file__).resolve().parent / "results"


def make_step(name: str, amp: bool, batch: int, seed: int = 0):
    """A closure running one training step of model ``name`` on a fixed batch."""
    torch.manual_seed(seed)
    model = aignet.create_model(name).to(memory_format=torch.channels_last).train()
    opt = build_optimizer(model, OptimConfig(lr=0.01))  # the trainer's SGD
    loss_fn = aignet.AIGLoss(model.target_rates)
    x = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            out = model(x)
        loss = loss_fn(out.logits, out.gates, y).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    return step


def measure(depth: int, amp: bool, batch: int, reps: int, warmup: int = 3) -> dict:
    """Interleaved dense/AIG step times and their per-repetition ratio."""
    dense = make_step(f"resnet{depth}_cifar", amp, batch)
    gated = make_step(f"aig_resnet{depth}_cifar", amp, batch)
    for _ in range(warmup):
        dense(), gated()
    pairs = [(dense(), gated()) for _ in range(reps)]
    d = statistics.median(p[0] for p in pairs)
    g = statistics.median(p[1] for p in pairs)
    return {"depth": depth, "precision": "bf16" if amp else "fp32", "batch": batch,
            "dense_step_s": round(d, 4), "aig_step_s": round(g, 4),
            "dense_images_per_s": round(batch / d, 1), "aig_images_per_s": round(batch / g, 1),
            "aig_relative_throughput": round(statistics.median(a / b for a, b in pairs), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--depths", default="32,56", help="CIFAR ResNet depths, comma-separated")
    parser.add_argument("--batch", type=int, default=128, help="images per step")
    parser.add_argument("--reps", type=int, default=8, help="timed steps per model")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", default=str(RESULTS / "train_speed_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(int(d), amp, args.batch, args.reps)
            for d in args.depths.split(",") for amp in (False, True)]
    env = [] if kernels.enabled() else ["AIGNET_KERNELS=off"]
    write_benchmark(args.out, rows, args.threads, env,
                    compiled_kernels=kernels.load() is not None)


if __name__ == "__main__":
    main()
