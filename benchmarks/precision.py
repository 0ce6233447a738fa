"""bf16 against fp32 inference of trained models on real CIFAR-10 test images.

For each model (shipped weights ``MODEL/TAG`` or checkpoints): gate-decision agreement with
fp32, the change of top-1 error, and the measured time per image at batch 1, 32 and 256 of
fp32 sparse, bf16 sparse, and the fp32 dense counterpart (every gate open, the same fused
network), all interleaved, median over repetitions. Also the model's own ideal speed-up
(dense MACs / mean MACs) and the measured speed-up over dense. Prints JSON and writes
benchmarks/results/precision_cpu.json. Run on an otherwise idle machine.

    python benchmarks/precision.py --data-dir ../shared/data \
        --models aig_resnet56_cifar/cifar10 aig_resnet32_cifar/cifar10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import aignet
from aignet.training.checkpoint import trained_config
from aignet.training.config import build_configured_data

RESULTS = Path(__file__).resolve().parent / "results"


def test_images(model, data_dir: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = build_configured_data(trained_config(model).data, data_dir, limit_val=limit,
                                 limit_train=1, val_batch_size=limit)
    return next(data.val.iter_from(0))


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


def measure(source: str, data_dir: str, limit: int, reps: int) -> dict:
    model = aignet.load_model(source)
    images, labels = test_images(model, data_dir, limit)
    fp32 = aignet.Predictor(model, channels_last=True)
    bf16 = aignet.Predictor(model, channels_last=True, precision="bf16")
    dense = aignet.Predictor(model, channels_last=True, mode="all")
    a, b = fp32(images), bf16(images)
    err = {k: float((p.logits.argmax(1) != labels).float().mean()) for k, p in
           (("fp32", a), ("bf16", b))}
    row = {"model": source, "images": len(labels),
           "gate_agreement": float((a.record.executed == b.record.executed).float().mean()),
           "top1_error_fp32": err["fp32"], "top1_error_bf16": err["bf16"],
           "top1_change_points": round(100 * (err["bf16"] - err["fp32"]), 3),
           "mac_ratio": a.record.summary()["mac_ratio"],
           "ideal_speedup": round(1 / a.record.summary()["mac_ratio"], 3), "batches": {}}
    for batch in (1, 32, 256):
        t = seconds_per_image({"fp32_dense": dense, "fp32_sparse": fp32, "bf16_sparse": bf16},
                              images, batch, reps)
        row["batches"][batch] = {
            **{f"{k}_ms_per_image": round(1e3 * v, 4) for k, v in t.items()},
            "fp32_sparse_speedup": round(t["fp32_dense"] / t["fp32_sparse"], 3),
            "bf16_sparse_speedup": round(t["fp32_dense"] / t["bf16_sparse"], 3),
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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "precision_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(m, args.data_dir, args.images, args.reps) for m in args.models]
    result = {"torch": torch.__version__, "threads": args.threads, "rows": rows,
              "command": "python benchmarks/precision.py --data-dir ../shared/data --models "
                         + " ".join(args.models)}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
