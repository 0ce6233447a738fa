"""``aignet bench``: dense vs masked vs sparse inference timing."""

from __future__ import annotations

import argparse
import json
import sys

from aignet.cli.common import add_command, positive_int

EXAMPLE = "aignet bench --model aig_resnet110_cifar --rate 0.6 --batch-sizes 1,32,256"


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
    p.add_argument("--model", default="aig_resnet110_cifar", help="gated model to time")
    p.add_argument("--rate", type=float, default=0.6,
                   help="fraction of images that opens each gate (calibrated)")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 32, 256])
    p.add_argument("--reps", type=positive_int, default=9,
                   help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels_last memory format (default on: 2-4x faster convs on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="precision of all three models (int8: branches quantized, calibrated on "
                        "the calibration images)")
    p.add_argument("--out", default=None, help="also write the JSON document to this file")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aignet.engine.bench import benchmark, format_rows
    from aignet.nn.target_rates import check_rate

    check_rate(args.rate, "--rate")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA GPU is visible")
    result = benchmark(args.model, args.rate, args.batch_sizes, args.reps, args.warmup,
                       args.device, args.threads, args.channels_last, args.seed,
                       progress=lambda msg: print(msg, file=sys.stderr, flush=True),
                       precision=args.precision)
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text if args.json else format_rows(result))
    return 0
