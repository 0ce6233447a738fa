"""``aignet recalibrate``: re-estimate BatchNorm statistics under inference-time gating."""

from __future__ import annotations

import argparse
import json

from aignet.cli.common import add_command, positive_int

EXAMPLE = "aignet recalibrate runs/aig56/last.pt --out runs/aig56/recalibrated.pt"


def add(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "recalibrate", EXAMPLE,
                    help="re-estimate BatchNorm statistics under inference-time gating",
                    description="Re-estimate the BatchNorm statistics of a trained AIG model "
                                "with its gates deterministic, on training images; writes a new "
                                "checkpoint.")
    p.add_argument("checkpoint", help="a training checkpoint")
    p.add_argument("--out", required=True, help="the new checkpoint (must not exist)")
    p.add_argument("--data-dir", default=None, help="data directory (default: the run's)")
    p.add_argument("--images", type=positive_int, default=10000,
                   help="training images to use (whole batches of 250)")
    p.add_argument("--all-images", action="store_true",
                   help="statistics of every branch over all images (masked), not only the "
                        "images that run it")
    p.add_argument("--threshold", type=float, default=0.5, help="gate threshold T")
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aignet.analysis.evaluation import recalibrate_checkpoint

    result = recalibrate_checkpoint(args.checkpoint, args.out, data_dir=args.data_dir,
                                    images=args.images, executed_only=not args.all_images,
                                    threshold=args.threshold, device=args.device)
    print(json.dumps(result))
    return 0
