"""``aignet train``: train from a YAML recipe."""

from __future__ import annotations

import argparse

from aignet.cli.common import add_command

EXAMPLE = ("aignet train configs/cifar10_pareto.yaml --out runs/resnet20 "
           "--data-dir ../shared/data --set model.name=resnet20_cifar")


def add(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", EXAMPLE,
                    help="train a model from a YAML recipe (torchrun for DDP)")
    p.add_argument("config", help="YAML recipe, e.g. configs/cifar10_aig110.yaml")
    p.add_argument("--out", required=True, help="run directory (last.pt, best.pt, log.jsonl)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=1 (repeatable)")
    p.add_argument("--data-dir", default=None, help="shortcut for --set data.root=PATH")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    mode.add_argument("--overwrite", action="store_true",
                      help="start anew in an OUT that holds a run, moving its files aside into "
                           "OUT/replaced-<time>/ (nothing is deleted)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aignet.training.config import load_config
    from aignet.training.train import train

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.root={args.data_dir}")
    config = load_config(args.config, overrides)
    train(config, args.out, resume=args.resume, overwrite=args.overwrite)
    return 0
