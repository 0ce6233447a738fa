"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()``, as in timm."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Mapping

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator adding a builder to the registry under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names (sorted) matching a shell-style ``pattern``."""
    _load_builders()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, pretrained: str | None = None, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: registered name, e.g. ``"aig_resnet110_cifar"`` (see :func:`list_models`).
        pretrained: the data set of shipped weights to load, e.g. ``"cifar10"``
            (``aignet.list_pretrained()``); the architecture options they were trained with
            are applied first. The model then carries ``pretrained_cfg`` (classes, input size,
            measured error and MACs).
        **kwargs: builder options, e.g. ``num_classes``, ``in_chans``, ``target_rates``,
            ``shortcut``, ``gate_hidden``.

    Returns:
        The model, in training mode.
    """
    _load_builders()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; `aignet models` lists them")
    if pretrained is not None:
        from aignet.models.pretrained import load_pretrained, pretrained_entry

        entry = pretrained_entry(name, pretrained)
        section = entry["config"]["model"]
        section = {**section, "kwargs": {**section["kwargs"], **kwargs}}
        info = entry["data_info"]
        model = create_model_from_config(section, info["num_classes"], info["in_chans"])
        return load_pretrained(model, name, pretrained)
    try:
        return _MODELS[name](**kwargs)
    except TypeError as err:
        if "unexpected keyword" not in str(err):
            raise
        raise ValueError(f"{name}: {err}") from None


def create_model_from_config(model: Mapping, num_classes: int, in_chans: int) -> nn.Module:
    """Build the model a training config's ``model`` section describes.

    The builder's defaults win unless the section sets a value: ``target_rates`` is passed only
    when given (a dense model refuses it), and ``kwargs`` are passed through.
    """
    kwargs = dict(model.get("kwargs") or {})
    if model.get("target_rates") is not None:
        kwargs["target_rates"] = model["target_rates"]
    return create_model(model["name"], num_classes=num_classes, in_chans=in_chans, **kwargs)


def _load_builders() -> None:
    # Importing the families registers their builders; deferred to avoid an import cycle.
    from aignet.models import cifar, imagenet  # noqa: F401
