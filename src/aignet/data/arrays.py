"""In-memory image data sets as arrays, and the folder checks every reader shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageArrays:
    """A small data set held in memory: uint8 images (N, C, H, W) and int64 labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if len(images) != len(labels):
                raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")


def require_dir(path: Path, what: str, expected: str) -> Path:
    """Raise a one-line FileNotFoundError naming what was expected where."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what} directory not found: {path} (expected {expected}); "
                                "pass --data-dir")
    return path
