"""``aignet models``: list the registered models or the shipped weights."""

from __future__ import annotations

import argparse
import fnmatch

from aignet.cli.common import add_command
from aignet.models.registry import list_models

EXAMPLE = "aignet models 'aig_*'   |   aignet models --pretrained"


def add(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "models", EXAMPLE,
                    help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'aig_*'")
    p.add_argument("--pretrained", action="store_true",
                   help="list the shipped weights (MODEL/TAG) instead")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        from aignet.models.pretrained import list_pretrained

        names = [n for n in list_pretrained() if fnmatch.fnmatch(n, args.pattern)]
        print("\n".join(names) if names else "no shipped weights match")
        return 0
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no registered model matches {args.pattern!r}")
    print("\n".join(names))
    return 0
