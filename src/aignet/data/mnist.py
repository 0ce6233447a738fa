"""MNIST and Fashion-MNIST from their gzip IDX files."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from aignet.data.arrays import ImageArrays, require_dir

# Debian's dataset-fashion-mnist package installs the IDX files here.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]
_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
          "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) into a uint8 array, checking its header."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt gzip archive ({err})") from None
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (_IMAGE_MAGIC, _LABEL_MAGIC):
        raise ValueError(f"{path}: bad IDX magic number {magic} (not an MNIST-style file)")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {body.size} values (truncated?)")
    return body.reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"missing {stem}.gz in {folder} (expected the four IDX files "
                            f"{', '.join(f + '.gz' for f in _FILES.values())})")


def read_mnist_like(root: str | Path, classes: list[str], what: str) -> ImageArrays:
    """Read the four IDX files of an MNIST-style data set in ``root``."""
    folder = require_dir(Path(root), what, "the four *-idx?-ubyte.gz files")
    arrays = {key: read_idx(_find(folder, stem)) for key, stem in _FILES.items()}
    for split in ("train", "test"):
        images = arrays[f"{split}_images"]
        if images.ndim != 3:
            raise ValueError(f"{what} {split} images have shape {images.shape}, expected (N, H, W)")
        arrays[f"{split}_images"] = images[:, None]  # (N, 1, H, W)
        arrays[f"{split}_labels"] = arrays[f"{split}_labels"].astype(np.int64)
    return ImageArrays(**arrays, classes=classes)


def read_fashion_mnist(root: str | Path | None = None) -> ImageArrays:
    """Fashion-MNIST; by default from Debian's ``dataset-fashion-mnist`` package."""
    root = Path(root or FASHION_MNIST_DIR)
    if not root.exists() and str(root) == FASHION_MNIST_DIR:
        raise FileNotFoundError(f"Fashion-MNIST not found at {root}: install it with "
                                "`apt-get install dataset-fashion-mnist` or pass --data-dir")
    return read_mnist_like(root, FASHION_CLASSES, "Fashion-MNIST")


def read_mnist(root: str | Path) -> ImageArrays:
    """MNIST from a folder holding its four IDX files."""
    return read_mnist_like(root, MNIST_CLASSES, "MNIST")
