"""The ``aignet`` command line: ``aignet models``, ``aignet info NAME`` ..."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from aignet.registry import create_model, list_models

Handler = Callable[[argparse.Namespace], int]


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'aig_*'")
    p.set_defaults(handler=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no registered model matches {args.pattern!r}")
    print("\n".join(names))
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters, MACs and per-block structure of a model")
    p.add_argument("name", help="registered model name (see `aignet models`)")
    p.add_argument("--input-size", type=int, default=None, help="square input size in pixels")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--in-chans", type=int, default=None, help="input channels (1: grayscale)")
    p.add_argument("--target-rates", default=None,
                   help="a number, comma-separated per-block list, or preset 'NAME:t'")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=_cmd_info)


def parse_target_rates(text: str | None) -> float | list[float] | str | None:
    """Command-line target rates: ``0.6``, ``1,1,0.8,...`` or ``aig50:0.6``."""
    if text is None or ":" in text:
        return text
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"cannot read target rates {text!r}: give a number, a comma-separated "
                         "list or a preset like 'aig50:0.6'") from None
    return values[0] if len(values) == 1 else values


def _cmd_info(args: argparse.Namespace) -> int:
    from aignet.info import format_info, model_info

    kwargs = {k: v for k, v in (("num_classes", args.num_classes), ("in_chans", args.in_chans),
                                ("target_rates", parse_target_rates(args.target_rates)))
              if v is not None}
    model = create_model(args.name, **kwargs)
    info = model_info(model, args.input_size)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_models, _add_info]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="aignet", description="Convolutional Networks with Adaptive Inference Graphs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
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
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        print(f"aignet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aignet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
