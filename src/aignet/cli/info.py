"""``aignet info``: parameters, MACs and per-block structure of a model."""

from __future__ import annotations

import argparse
import json

from aignet.cli.common import add_command
from aignet.models.registry import create_model

EXAMPLE = "aignet info aig_resnet110_cifar --json"


def add(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "info", EXAMPLE,
                    help="parameters, MACs and per-block structure of a model")
    p.add_argument("name", help="registered model name (see `aignet models`)")
    p.add_argument("--input-size", type=int, default=None, help="square input size in pixels")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--in-chans", type=int, default=None, help="input channels (1: grayscale)")
    p.add_argument("--target-rates", default=None,
                   help="a number, comma-separated per-block list, or preset 'NAME:t'")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aignet.engine.model_info import format_info, model_info
    from aignet.nn.target_rates import parse_target_spec

    kwargs = {k: v for k, v in (("num_classes", args.num_classes), ("in_chans", args.in_chans),
                                ("target_rates", parse_target_spec(args.target_rates)))
              if v is not None}
    model = create_model(args.name, **kwargs)
    info = model_info(model, args.input_size)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
