"""``aignet demo``: the end-to-end demo."""

from __future__ import annotations

import argparse

from aignet.cli.common import add_command, positive_int

EXAMPLE = "aignet demo --epochs 2"


def add(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo", EXAMPLE,
                    help="train AIG + dense baseline, evaluate, analyse, report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "cifar10"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=positive_int, default=None, help="override the recipe's epochs")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aignet.analysis.demo import run_demo

    run_demo(args.out, args.data, args.data_dir, args.epochs)
    return 0
