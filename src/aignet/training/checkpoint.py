"""Safe checkpoint I/O: atomic writes and ``weights_only`` loading."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from aignet.data import normalization
from aignet.models.pretrained import shipped_entry
from aignet.models.registry import create_model, create_model_from_config
from aignet.training.config import Config, from_dict


def save_atomic(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash mid-write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_safe(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> object:
    """``torch.load(path, weights_only=True)`` with one-line errors for missing/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any parse failure of a foreign file, one message
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load checkpoint {path}: not a valid PyTorch checkpoint or "
                         f"it holds objects other than tensors and plain data ({first})") from None


# -- the training checkpoint format and trained models ------------------------------------------
CHECKPOINT_FORMAT = "aignet-checkpoint-v1"
# The files of a run folder (``aignet train --out``).
RUN_FILES = ("last.pt", "best.pt", "log.jsonl", "config.yaml")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A training checkpoint, loaded safely and checked for its format."""
    ckpt = load_safe(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an aignet training checkpoint "
                         f"(expected format {CHECKPOINT_FORMAT})")
    return ckpt


def build_model(config: Config, num_classes: int, in_chans: int) -> nn.Module:
    """The model a training config describes, for the data's classes and channels."""
    return create_model_from_config(asdict(config.model), num_classes, in_chans)


def total_epochs(config: dict) -> int:
    """Training epochs behind a run, those of the run it was initialised from included
    (``model.init_from``, followed recursively): the honest training budget of a fine-tune."""
    source = config["model"].get("init_from")
    if not source:
        return config["train"]["epochs"]
    entry = shipped_entry(source)
    before = entry["train_epochs"] if entry else total_epochs(load_checkpoint(source)["config"])
    return config["train"]["epochs"] + before


def trained_config(model: nn.Module) -> Config:
    """The training config of a model returned by :func:`load_model`."""
    return from_dict(model.pretrained_cfg["config"])


def load_model(source: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """A trained model, in eval mode, from a training checkpoint or shipped weights.

    Args:
        source: a training checkpoint (``last.pt`` / ``best.pt``) or ``MODEL/TAG`` naming
            shipped weights (``aignet.list_pretrained()``), e.g. ``aig_resnet56_cifar/cifar10``.
        device: where to put it.

    Returns:
        The model with ``pretrained_cfg``: ``classes``, ``num_classes``, ``in_chans``,
        ``input_size``, ``mean`` and ``std`` (the normalisation its inputs need), ``data`` (the
        data set's name), ``config`` (the training config, a dict) and ``source``.
    """
    source = str(source)
    entry = shipped_entry(source)
    if entry:
        model = create_model(entry["model"], pretrained=source.split("/")[1])
        config, info = entry["config"], entry["data_info"]
    else:
        ckpt = load_checkpoint(source)
        config, info = ckpt["config"], ckpt["data_info"]
        model = build_model(from_dict(config), info["num_classes"], info["in_chans"])
        model.load_state_dict(ckpt["model"])
    mean, std = (info.get("mean"), info.get("std")) if info.get("mean") else \
        normalization(info["name"])
    model.pretrained_cfg = {
        "source": source, "data": info["name"], "classes": list(info["classes"]),
        "num_classes": info["num_classes"], "in_chans": info["in_chans"],
        "input_size": info["input_size"], "mean": tuple(mean), "std": tuple(std),
        "config": config, "data_info": info}
    return model.to(device).eval()
