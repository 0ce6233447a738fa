"""The ``aignet`` command line: one module per command, each a thin layer over a public
function (``aignet.cli.<command>.add`` builds its parser, ``run`` executes it).

    aignet models | info | bench | train | eval | recalibrate | predict | analyze | demo | attack
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aignet.cli import analyze, attack, bench, demo, info, models, predict, recalibrate, train
from aignet.cli import eval as eval_
from aignet.cli.common import Parser, document_defaults

COMMANDS = (models, info, bench, train, eval_, recalibrate, predict, analyze, demo, attack)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per module of :data:`COMMANDS`."""
    parser = Parser(prog="aignet",
                    description="Convolutional Networks with Adaptive Inference Graphs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add(sub)
    for command_parser in sub.choices.values():
        document_defaults(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors become one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (ValueError, OSError, FloatingPointError) as err:  # OSError: missing, read-only...
        print(f"aignet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aignet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
