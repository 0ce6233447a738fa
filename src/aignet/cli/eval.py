"""``aignet eval``: evaluate a checkpoint or shipped weights."""

from __future__ import annotations

import argparse
import json

from aignet.cli.common import add_command, positive_int, trained_source

EXAMPLE = "aignet eval --pretrained aig_resnet56_cifar/cifar10 --data-dir ../shared/data"


def add(sub: argparse._SubParsersAction) -> None:
    from aignet.nn.gates import INFERENCE_MODES

    p = add_command(sub, "eval", EXAMPLE,
                    help="accuracy, MACs and execution rates of a checkpoint")
    p.add_argument("checkpoint", nargs="?",
                   help="a training checkpoint (last.pt / best.pt), or shipped weights MODEL/TAG")
    p.add_argument("--pretrained", metavar="MODEL/TAG",
                   help="shipped weights, e.g. aig_resnet56_cifar/cifar10 (aignet models "
                        "--pretrained lists them)")
    p.add_argument("--data-dir", default=None, help="data directory (default: the run's)")
    p.add_argument("--mode", choices=INFERENCE_MODES, default="deterministic")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--execution", choices=("sparse", "masked"), default="sparse")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--limit", type=positive_int, default=None,
                   help="evaluate the first N images only")
    p.add_argument("--no-fuse", action="store_true", help="run the unfused model")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="bf16: convolutions in bfloat16 (AMX); int8: residual branches quantized "
                        "after training (both keep the gates and the first stage in float32)")
    p.add_argument("--calibration-images", type=positive_int, default=512,
                   help="int8: un-augmented training images that calibrate the quantization")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0, help="generator seed (stochastic mode)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aignet.analysis.evaluation import evaluate_checkpoint, format_eval

    source = trained_source("eval", args.checkpoint, args.pretrained)
    result = evaluate_checkpoint(source, data_dir=args.data_dir,
                                 mode=args.mode, threshold=args.threshold, execution=args.execution,
                                 batch_size=args.batch_size, limit=args.limit,
                                 fused=not args.no_fuse, channels_last=args.channels_last,
                                 device=args.device, seed=args.seed, precision=args.precision,
                                 calibration_images=args.calibration_images)
    print(json.dumps(result, indent=2) if args.json else format_eval(result))
    return 0
