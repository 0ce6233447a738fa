"""Measured against ideal speed-up of trained models on their own test images.

For each model (shipped weights ``MODEL/TAG`` or a checkpoint): ``aignet bench`` of trained
weights (:func:`aignet.analysis.evaluation.bench_checkpoint`): the model's fused sparse pass
against the same network without gates, interleaved, on the first ``--images`` validation
images at batch 1, 32 and 256. ``measured_over_ideal`` compares with the time the executed
blocks alone take (the model's own per-layer rates on those images times the measured dense
block times); ``measured_over_mac_ideal`` with its MAC count. Prints JSON and writes
benchmarks/results/trained_speed_cpu.json. Run on an otherwise idle machine.

    python benchmarks/trained_speed.py --data-dir ../shared/data \
        --models aig_resnet56_cifar/cifar10 aig_resnet32_cifar/cifar10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from aignet.analysis.evaluation import bench_checkpoint
from aignet.engine.bench import write_benchmark

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="MODEL/TAG or checkpoints")
    parser.add_argument("--data-dir", default=None, help="data directory (default: the run's)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "trained_speed_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = {m: bench_checkpoint(m, data_dir=args.data_dir, images=args.images, reps=args.reps,
                                progress=lambda msg, m=m: print(f"{m}: {msg}", file=sys.stderr))
            for m in args.models}
    fields = ("images", "execution_rate", "mac_ratio", "ideal_ratio", "time_ratio", "speedup",
              "measured_over_ideal", "measured_over_mac_ideal", "dense_ms_per_image",
              "ms_per_image")
    rows = [{"model": m, "batch_size": r["batch_size"], **{k: r[k] for k in fields}}
            for m, run in runs.items() for r in run["rows"]]
    write_benchmark(args.out, rows, args.threads)


if __name__ == "__main__":
    main()
