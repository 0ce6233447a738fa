"""What every command shares: the sub-parser factory (defaults shown, one example each)."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _has_default(action: argparse.Action) -> bool:
    return bool(action.option_strings) and not (
        action.default is None or action.default is False or action.default == argparse.SUPPRESS)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Shows the default of every option that has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if _has_default(action) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def document_defaults(parser: argparse.ArgumentParser) -> None:
    """Give every option that has a default but no help a help text, so the default shows."""
    for action in parser._actions:
        if not action.help and _has_default(action):
            action.help = "default: %(default)s"


def add_command(sub: argparse._SubParsersAction, name: str, example: str, *, help: str,
                description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command parser whose help shows every default and ends with an example."""
    return sub.add_parser(name, help=help, description=description or help,
                          epilog=f"example: {example}", formatter_class=_DefaultsFormatter)


def trained_source(command: str, checkpoint: str | None, pretrained: str | None) -> str:
    """The one model a command runs on: a checkpoint path or shipped ``MODEL/TAG`` weights.

    Raises a one-line ValueError unless exactly one is given and shipped weights exist.
    """
    if (checkpoint is None) == (pretrained is None):
        raise ValueError(f"aignet {command}: give a checkpoint path or --pretrained MODEL/TAG "
                         "(one)")
    if pretrained is None:
        return checkpoint
    if "/" not in pretrained:
        raise ValueError(f"--pretrained {pretrained}: expected MODEL/TAG, e.g. "
                         "aig_resnet56_cifar/cifar10")
    from aignet.models.pretrained import pretrained_entry

    pretrained_entry(*pretrained.split("/", 1))  # a one-line error naming what is shipped
    return pretrained
