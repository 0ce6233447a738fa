"""Small image folders decoded once into memory, to train at the speed of the binary readers.

A folder ``root/train/<class>/*`` (and ``root/val/<class>/*``, or a seeded hold-out of train)
whose images are small (up to :data:`IN_MEMORY_MAX_SIZE` pixels a side) is decoded, resized to
``image_size`` x ``image_size``, and returned as :class:`ImageArrays`, which the data pipeline
then caches and feeds like CIFAR: uint8 tensors on the device, batch-wise pad-crop-flip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aignet.data.arrays import ImageArrays
from aignet.data.imagefolder import scan_folder, to_rgb8

# Larger images keep the ImageNet-style pipeline (decoding in DataLoader workers).
IN_MEMORY_MAX_SIZE = 64


def first_image_size(root: Path) -> int:
    """The longer side of the first readable training image (decides the pipeline when
    ``data.image_size`` is not set)."""
    from PIL import Image, UnidentifiedImageError

    samples, _ = scan_folder(root / "train")
    for path, _ in samples[:20]:
        try:
            with Image.open(path) as img:
                return max(img.size)
        except (OSError, UnidentifiedImageError):
            continue
    raise ValueError(f"none of the first images under {root / 'train'} can be decoded; "
                     "set data.image_size or check the files")


def check_same_classes(train: list[str], val: list[str]) -> None:
    """Refuse train/ and val/ class folders that differ, naming the differences."""
    if train == val:
        return
    only_train = sorted(set(train) - set(val))
    only_val = sorted(set(val) - set(train))
    raise ValueError(f"the class folders of train/ and val/ differ: only in train/: "
                     f"{', '.join(only_train) or 'none'}; only in val/: "
                     f"{', '.join(only_val) or 'none'}")


def split_samples(root: Path, val_fraction: float, seed: int):
    """(train samples, val samples, classes, note): val/ when present, else a seeded hold-out."""
    train, classes = scan_folder(root / "train")
    if (root / "val").is_dir():
        val, val_classes = scan_folder(root / "val")
        check_same_classes(classes, val_classes)
        return train, val, classes, None
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"{root} has no val/ folder: set data.val_fraction (e.g. 0.1) to hold "
                         f"out part of train/ for validation")
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = max(1, round(val_fraction * len(train)))
    val = [train[i] for i in sorted(order[:n_val])]
    train = [train[i] for i in sorted(order[n_val:])]
    note = (f"note: {root} has no val/ folder; holding out {n_val} of {len(order)} training "
            f"images for validation (data.val_fraction={val_fraction}, seed {seed})")
    return train, val, classes, note


def decode(samples: list[tuple[Path, int]], size: int,
           strict: bool) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """uint8 (N, 3, size, size) images and labels; undecodable files are skipped (or fatal)."""
    from PIL import Image, UnidentifiedImageError

    images, labels, skipped = [], [], []
    for path, label in samples:
        try:
            with Image.open(path) as img:
                img = to_rgb8(img)
                if img.size != (size, size):
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
                labels.append(label)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            if strict:
                raise ValueError(f"cannot decode {path}: {err}") from None
            skipped.append(path)
    if not images:
        raise ValueError("no image could be decoded")
    return np.stack(images), np.asarray(labels, dtype=np.int64), skipped


def read_folder_arrays(root: str | Path, image_size: int, val_fraction: float = 0.0,
                       seed: int = 0, strict: bool = False) -> tuple[ImageArrays, list[Path]]:
    """A small image folder as arrays (shuffled once, seeded, so a limit takes a random
    subset of every class), and the files that could not be decoded."""
    root = Path(root)
    train, val, classes, note = split_samples(root, val_fraction, seed)
    if note:
        import sys
        print(note, file=sys.stderr)
    train_x, train_y, bad_train = decode(train, image_size, strict)
    val_x, val_y, bad_val = decode(val, image_size, strict)
    rng = np.random.default_rng(seed)
    p, q = rng.permutation(len(train_y)), rng.permutation(len(val_y))
    arrays = ImageArrays(train_x[p], train_y[p], val_x[q], val_y[q], classes)
    return arrays, bad_train + bad_val


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of uint8 images (N, C, H, W)."""
    x = images.astype(np.float32) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3)).clip(min=1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
