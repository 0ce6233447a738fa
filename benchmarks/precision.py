"""bf16 and int8 against fp32 inference of trained models on real CIFAR-10 test images.

For each model (shipped weights ``MODEL/TAG`` or checkpoints) and reduced precision: gate-decision
agreement with fp32, the change of top-1 error, and the measured time per image at batch 1, 32
and 256 of fp32 sparse, bf16 sparse (first stage in float32, the default), bf16 sparse with
every block converted, int8 sparse (calibrated on 512 un-augmented training images), and the
fp32 dense counterpart (every gate open, the same fused network), all
interleaved, median over repetitions. Also the model's own ideal speed-up
(dense MACs / mean MACs) and the measured speed-up over dense. Prints JSON and writes
benchmarks/results/precision_cpu.json. Run on an otherwise idle machine.

    python benchmarks/precision.py --data-dir ../shared/data \
        --models aig_resnet56_cifar/cifar10 aig_resnet32_cifar/cifar10
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import aignet
from aignet.engine.bench import write_benchmark
from aignet.training.checkpoint import trained_config
from aignet.training.config import build_configured_data

RESULTS = Path(__file__).resolve().parent / "results"


# Reduced-precision variants: name -> Predictor keywords. "bf16" keeps the first stage (and the
# input and stem) in float32 by default; "bf16_all" converts every block.
LOW = {"bf16": {"precision": "bf16"}, "bf16_all": {"precision": "bf16", "keep_float": ()},
       "int8": {"precision": "int8"}}


def images_and_calibration(model, data_dir: str, limit: int, calibration: int
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(test images, labels, un-augmented training images for int8 calibration)."""
    data = build_configured_data(trained_config(model).data, data_dir, calibration,
                                 limit_val=limit, limit_train=calibration, val_batch_size=limit,
                                 augment=False)
    images, labels = next(data.val.iter_from(0))
    return images, labels, next(data.train.iter_from(0))[0]


def seconds_per_image(predictors: dict, images: torch.Tensor, batch: int, reps: int) -> dict:
    """Interleaved timing of each predictor on the first ``batch`` images (median)."""
    x = images[:batch]
    times: dict[str, list[float]] = {k: [] for k in predictors}
    for _ in range(2):
        for p in predictors.values():
            p(x)
    for _ in range(reps):
        for name, p in predictors.items():
            start = time.perf_counter()
            p(x)
            times[name].append((time.perf_counter() - start) / batch)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(source: str, data_dir: str, limit: int, reps: int, calibration: int) -> dict:
    model = aignet.load_model(source)
    images, labels, calib = images_and_calibration(model, data_dir, limit, calibration)
    predictors = {"fp32_dense": aignet.Predictor(model, channels_last=True, mode="all"),
                  "fp32_sparse": aignet.Predictor(model, channels_last=True),
                  **{f"{name}_sparse": aignet.Predictor(model, channels_last=True,
                                                        calibration=calib, **kwargs)
                     for name, kwargs in LOW.items()}}
    out = {k.removesuffix("_sparse"): p(images) for k, p in predictors.items()
           if k != "fp32_dense"}
    err = {k: float((p.logits.argmax(1) != labels).float().mean()) for k, p in out.items()}
    ref = out["fp32"]
    row = {"model": source, "images": len(labels), "calibration_images": len(calib),
           "top1_error_fp32": err["fp32"], "mac_ratio": ref.record.summary()["mac_ratio"],
           "ideal_speedup": round(1 / ref.record.summary()["mac_ratio"], 3), "batches": {}}
    for p in LOW:
        executed = out[p].record.executed
        row |= {f"gate_agreement_{p}": float((ref.record.executed == executed).float().mean()),
                f"top1_error_{p}": err[p],
                f"top1_change_points_{p}": round(100 * (err[p] - err["fp32"]), 3)}
    for batch in (1, 32, 256):
        t = seconds_per_image(predictors, images, batch, reps)
        row["batches"][batch] = {
            **{f"{k}_ms_per_image": round(1e3 * v, 4) for k, v in t.items()},
            **{f"{p}_sparse_speedup": round(t["fp32_dense"] / t[f"{p}_sparse"], 3)
               for p in ("fp32", *LOW)},
            "fp32_measured_over_ideal": round(t["fp32_dense"] / t["fp32_sparse"]
                                              / row["ideal_speedup"], 3)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="MODEL/TAG or checkpoints")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--images", type=int, default=10000, help="test images for accuracy")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calibration", type=int, default=512,
                        help="un-augmented training images that calibrate int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "precision_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(m, args.data_dir, args.images, args.reps, args.calibration)
            for m in args.models]
    write_benchmark(args.out, rows, args.threads)


if __name__ == "__main__":
    main()
