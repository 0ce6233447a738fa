"""Trained weights shipped inside the package: nothing is ever downloaded.

``aignet/weights/<tag>/`` holds one half-precision safetensors file per model and a
``manifest.json`` that records, per model, the file's sha256, the training recipe and command,
the commit, the training config and data facts, and the measured test error and MACs.
``create_model(name, pretrained="cifar10")`` and ``aignet eval --pretrained name/cifar10`` read
them; ``scripts/ship_weights.py`` writes them from training checkpoints. A tag names the data
set, with a suffix where another recipe trained the same model (``cifar10_45ep``), as timm's
pretrained tags do.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"


def _manifest_path(tag: str, root: Path | None = None) -> Path:
    return (root or WEIGHTS_DIR) / tag / MANIFEST


def read_manifest(tag: str, root: Path | None = None) -> dict:
    """The manifest of the weights of ``tag`` (empty when none shipped)."""
    path = _manifest_path(tag, root)
    if not path.is_file():
        return {"tag": tag, "models": []}
    return json.loads(path.read_text())


def list_pretrained() -> list[str]:
    """Every shipped ``model/tag`` pair, sorted."""
    found = []
    for manifest in sorted(WEIGHTS_DIR.glob(f"*/{MANIFEST}")):
        tag = manifest.parent.name
        found += [f"{m['model']}/{tag}" for m in read_manifest(tag)["models"]]
    return sorted(found)


def pretrained_entry(name: str, tag: str) -> dict:
    """The manifest entry of ``name`` trained on ``tag``; a one-line error lists what exists."""
    for entry in read_manifest(tag)["models"]:
        if entry["model"] == name:
            return entry
    have = ", ".join(list_pretrained()) or "none"
    raise ValueError(f"no shipped weights for {name}/{tag}; shipped: {have}")


def shipped_entry(source: str) -> dict | None:
    """The manifest entry when ``source`` names shipped weights (``MODEL/TAG``) and no file of
    that name exists; None otherwise (``source`` is then a path)."""
    if Path(source).exists() or source.count("/") != 1:
        return None
    name, tag = source.split("/")
    return next((e for e in read_manifest(tag)["models"] if e["model"] == name), None)


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_pretrained_state(name: str, tag: str) -> dict[str, torch.Tensor]:
    """The verified state_dict (float32) of a shipped model."""
    entry = pretrained_entry(name, tag)
    path = WEIGHTS_DIR / tag / entry["file"]
    if not path.is_file() or sha256(path) != entry["sha256"]:
        raise ValueError(f"shipped weights {path} are missing or corrupt (sha256 differs from "
                         f"the manifest); reinstall aignet")
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}


def load_pretrained(model: nn.Module, name: str, tag: str) -> nn.Module:
    """Load the shipped weights of ``name``/``tag`` into ``model`` (strictly); returns it."""
    model.load_state_dict(load_pretrained_state(name, tag))
    model.pretrained_cfg = pretrained_cfg(pretrained_entry(name, tag), tag)
    return model


def pretrained_cfg(entry: dict, tag: str) -> dict:
    """What a user of the weights needs: classes, input size, data set, measured numbers."""
    info = entry["data_info"]
    return {"tag": tag, "data": info["name"], "classes": info["classes"],
            "input_size": info["input_size"], "in_chans": info["in_chans"],
            "top1_error": entry["top1_error"], "macs_mean": entry["macs_mean"]}


def export_weights(state: dict[str, torch.Tensor], entry: dict, tag: str,
                   root: Path | None = None) -> dict:
    """Write ``state`` as half-precision safetensors and record ``entry`` in the manifest.

    Floating tensors are stored in float16 (``running_var`` and friends included: CIFAR values
    are far inside its range). Returns the manifest entry with ``file`` and ``sha256``.
    """
    folder = (root or WEIGHTS_DIR) / tag
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{entry['model']}.safetensors"
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(half, str(path))
    entry = {**entry, "file": path.name, "sha256": sha256(path)}
    manifest = read_manifest(tag, root)
    manifest["models"] = sorted([m for m in manifest["models"] if m["model"] != entry["model"]]
                                + [entry], key=lambda m: m["model"])
    _manifest_path(tag, root).write_text(json.dumps(manifest, indent=1) + "\n")
    return entry
