"""``aignet bench``: dense vs masked vs sparse inference timing, of a synthetic gated model at a
chosen execution rate or of trained weights on their own test images."""

from __future__ import annotations

import argparse
import json
import sys

from aignet.cli.common import add_command, positive_int, trained_source

EXAMPLE = ("aignet bench --model aig_resnet110_cifar --rate 0.6 --batch-sizes 1,32,256; "
           "trained weights: aignet bench --pretrained aig_resnet56_cifar/cifar10 "
           "--data-dir ../shared/data")
SYNTHETIC_MODEL, SYNTHETIC_RATE = "aig_resnet110_cifar", 0.6


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return values


def add(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "bench", EXAMPLE,
                    help="time dense vs masked vs sparse inference")
    p.add_argument("checkpoint", nargs="?",
                   help="trained weights to time on their test images: a training checkpoint "
                        "(instead of --model)")
    p.add_argument("--pretrained", metavar="MODEL/TAG",
                   help="shipped weights to time on their test images, e.g. "
                        "aig_resnet56_cifar/cifar10 (instead of --model)")
    p.add_argument("--model", default=None,
                   help=f"synthetic gated model to time (default {SYNTHETIC_MODEL})")
    p.add_argument("--rate", type=float, default=None,
                   help="synthetic model: fraction of images that opens each gate (calibrated; "
                        f"default {SYNTHETIC_RATE})")
    p.add_argument("--data-dir", default=None,
                   help="trained weights: data directory (default: the run's)")
    p.add_argument("--images", type=positive_int, default=256,
                   help="trained weights: validation images timed at every batch size")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="trained weights: gate threshold T")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 32, 256])
    p.add_argument("--reps", type=positive_int, default=9,
                   help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="synthetic model: cpu or cuda")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels_last memory format (default on: 2-4x faster convs on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="precision of every timed model (int8: branches quantized, calibrated "
                        "on the calibration images)")
    p.add_argument("--calibration-images", type=positive_int, default=512,
                   help="trained weights, int8: un-augmented training images that calibrate "
                        "the quantization")
    p.add_argument("--out", default=None, help="also write the JSON document to this file")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aignet.engine.bench import format_rows

    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.checkpoint or args.pretrained:
        result = _bench_trained(args, progress)
    else:
        result = _bench_synthetic(args, progress)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text if args.json else format_rows(result))
    return 0


def _bench_trained(args: argparse.Namespace, progress) -> dict:
    from aignet.analysis.evaluation import bench_checkpoint

    source = trained_source("bench", args.checkpoint, args.pretrained)
    for flag, value in (("--model", args.model), ("--rate", args.rate)):
        if value is not None:
            raise ValueError(f"{flag} times a synthetic model; trained weights ({source}) "
                             f"decide with their own gates: drop {flag}")
    if args.device != "cpu":
        raise ValueError("trained weights are timed on the CPU; drop --device")
    return bench_checkpoint(source, data_dir=args.data_dir, images=args.images,
                            batch_sizes=args.batch_sizes, reps=args.reps, warmup=args.warmup,
                            threshold=args.threshold, channels_last=args.channels_last,
                            threads=args.threads, precision=args.precision,
                            calibration_images=args.calibration_images, progress=progress)


def _bench_synthetic(args: argparse.Namespace, progress) -> dict:
    from aignet.engine.bench import benchmark
    from aignet.nn.target_rates import check_rate

    rate = SYNTHETIC_RATE if args.rate is None else args.rate
    check_rate(rate, "--rate")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA GPU is visible")
    return benchmark(args.model or SYNTHETIC_MODEL, rate, args.batch_sizes, args.reps,
                     args.warmup, args.device, args.threads, args.channels_last, args.seed,
                     progress=progress, precision=args.precision)
