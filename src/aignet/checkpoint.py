"""Safe checkpoint I/O: atomic writes, ``weights_only`` loading, torchvision weight import."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

GATE_KEY = ".gate."


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


def load_resnet_weights(model: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Load a torchvision-style ResNet state_dict into an aignet model (gated or not).

    Every key of ``state_dict`` must exist in the model with the same shape; the model keys it
    lacks must all be gate keys (``layerX.Y.gate.*``), which keep their initialisation.

    Returns:
        The gate keys left at initialisation.
    """
    own = model.state_dict()
    unexpected = [k for k in state_dict if k not in own]
    if unexpected:
        name = getattr(model, "name", "the model")
        raise ValueError(f"{len(unexpected)} keys do not belong to {name} "
                         f"(first: {unexpected[0]}); is it the same ResNet depth?")
    wrong = [k for k, v in state_dict.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        key = wrong[0]
        raise ValueError(f"shape mismatch for {key}: checkpoint {tuple(state_dict[key].shape)} "
                         f"vs model {tuple(own[key].shape)} (num_classes or in_chans differ?)")
    missing = [k for k in own if k not in state_dict]
    not_gate = [k for k in missing if GATE_KEY not in k]
    if not_gate:
        raise ValueError(f"checkpoint lacks {len(not_gate)} non-gate keys (first: {not_gate[0]})")
    model.load_state_dict(state_dict, strict=False)
    return missing
