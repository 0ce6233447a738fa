"""Data sets: ``build_data(name, root, ...)`` -> train/val loaders and facts about the data.

* ``cifar10``: ``cifar-10-batches-bin/`` (binary) or ``cifar-10-batches-py/`` (python layout).
* ``cifar100``: ``cifar-100-python/``.
* ``fashion-mnist``: four gzip IDX files; default ``/usr/share/datasets/fashion-mnist``.
* ``mnist``: four gzip IDX files.
* ``imagefolder``: ``root/train/<class>/*`` and ``root/val/<class>/*``.

Only Fashion-MNIST has a default directory; the others need ``--data-dir`` (``data.root``).

Small data sets are held in memory as uint8 tensors on the training device and augmented
batch-wise (:mod:`aignet.data.tensor_loader`); decoded arrays are cached as ``.npz`` files under
``$AIGNET_CACHE`` (default ``~/.cache/aignet``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aignet.data.arrays import ImageArrays
from aignet.data.cifar import read_cifar10, read_cifar100
from aignet.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, FolderLoader, ImageFolder
from aignet.data.mnist import read_fashion_mnist, read_mnist
from aignet.data.tensor_loader import Augment, TensorLoader


@dataclass(frozen=True)
class DataSpec:
    """How to read a small data set and how to feed it."""

    reader: Callable[[str | Path | None], ImageArrays]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment
    default_root: str | None = None


SPECS: dict[str, DataSpec] = {
    "cifar10": DataSpec(read_cifar10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                        Augment(pad=4, flip=True)),
    "cifar100": DataSpec(read_cifar100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                         Augment(pad=4, flip=True)),
    "fashion-mnist": DataSpec(read_fashion_mnist, (0.2860,), (0.3530,), Augment(pad=2, flip=True),
                              "/usr/share/datasets/fashion-mnist"),
    "mnist": DataSpec(read_mnist, (0.1307,), (0.3081,), Augment(pad=2, flip=False)),
}
DATASETS = (*SPECS, "imagefolder")


@dataclass(frozen=True)
class DataInfo:
    """Facts about a data set that models and reports need."""

    name: str
    num_classes: int
    in_chans: int
    input_size: int
    classes: list[str]
    train_size: int
    val_size: int
    # The normalisation images get before the model: (x / 255 - mean) / std per channel.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) a data set's images are normalised with (ImageNet statistics for folders).

    For checkpoints written before ``DataInfo`` carried them.
    """
    spec = SPECS.get(name)
    return (spec.mean, spec.std) if spec else (IMAGENET_MEAN, IMAGENET_STD)


@dataclass
class Data:
    """Train and validation loaders (``set_epoch``, ``iter_from``, ``len``) and their info."""

    train: TensorLoader | FolderLoader
    val: TensorLoader | FolderLoader
    info: DataInfo


def load_arrays(name: str, root: str | Path | None = None) -> ImageArrays:
    """Decoded arrays of a small data set, from the ``.npz`` cache when it is current."""
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    spec = SPECS[name]
    root = root or spec.default_root
    if root is None:
        raise ValueError(f"data set {name} needs a directory: pass --data-dir (or data.root)")
    cache = _cache_path(name, Path(root))
    if cache is not None and cache.is_file():
        cached = _read_cache(cache)
        if cached is not None:
            return cached
    arrays = spec.reader(root)
    if cache is not None:
        _write_cache(cache, arrays)
    return arrays


def _cache_path(name: str, root: Path) -> Path | None:
    if not root.exists() or os.environ.get("AIGNET_CACHE") == "off":
        return None
    stats = sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in root.rglob("*") if p.is_file())
    key = hashlib.sha256(repr((name, str(root.resolve()), stats)).encode()).hexdigest()[:16]
    base = Path(os.environ.get("AIGNET_CACHE", Path.home() / ".cache" / "aignet"))
    return base / f"{name}-{key}.npz"


def _read_cache(path: Path) -> ImageArrays | None:
    """The cached arrays, or None (with a note) after discarding an unreadable cache file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return ImageArrays(z["train_images"], z["train_labels"], z["test_images"],
                               z["test_labels"], [str(c) for c in z["classes"]])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        print(f"note: discarding the corrupt data cache {path} ({type(err).__name__}); "
              "decoding the data set again", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None


def _write_cache(path: Path, arrays: ImageArrays) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, train_images=arrays.train_images, train_labels=arrays.train_labels,
                 test_images=arrays.test_images, test_labels=arrays.test_labels,
                 classes=np.array(arrays.classes))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs the decoding next time


def build_data(name: str, root: str | Path | None, batch_size: int, *,
               val_batch_size: int | None = None, augment: bool = True, seed: int = 0,
               rank: int = 0, world: int = 1, device: torch.device | str = "cpu",
               channels_last: bool = False, workers: int = 4, strict: bool = False,
               limit_train: int | None = None, limit_val: int | None = None) -> Data:
    """Loaders for training and validation (the test split of the small data sets).

    Args:
        name: one of :data:`DATASETS`.
        root: data directory (None: the data set's default).
        batch_size: global training batch size.
        val_batch_size: global evaluation batch size (default: ``batch_size``).
        augment: batch-wise augmentation for training.
        seed: order and augmentation seed.
        rank, world: distributed slice.
        device: where batches live.
        channels_last: deliver channels_last tensors.
        workers: DataLoader workers (imagefolder only).
        strict: fail on undecodable images instead of skipping them (imagefolder only).
        limit_train, limit_val: use only the first N images (quick runs, tests).
    """
    device = torch.device(device)
    val_batch_size = val_batch_size or batch_size
    if name == "imagefolder":
        return _build_folder(root, batch_size, val_batch_size, seed, rank, world, device,
                             channels_last, workers, strict)
    arrays = load_arrays(name, root)
    spec = SPECS[name]
    train_x, train_y = arrays.train_images[:limit_train], arrays.train_labels[:limit_train]
    val_x, val_y = arrays.test_images[:limit_val], arrays.test_labels[:limit_val]
    common = dict(mean=spec.mean, std=spec.std, seed=seed, rank=rank, world=world,
                  device=device, channels_last=channels_last)
    train = TensorLoader(_tensor(train_x), _tensor(train_y),
                         batch_size, train=True, augment=spec.augment if augment else None,
                         **common)
    val = TensorLoader(_tensor(val_x), _tensor(val_y),
                       val_batch_size, train=False, **common)
    info = DataInfo(name, len(arrays.classes), train_x.shape[1], train_x.shape[2],
                    list(arrays.classes), len(train_y), len(val_y), spec.mean, spec.std)
    return Data(train, val, info)


def _build_folder(root, batch_size, val_batch_size, seed, rank, world, device, channels_last,
                  workers, strict) -> Data:
    if root is None:
        raise ValueError("imagefolder needs --data-dir pointing at a folder with train/ and val/")
    root = Path(root)
    train_set = ImageFolder(root / "train", train=True, strict=strict)
    val_set = ImageFolder(root / "val", train=False, strict=strict)
    if train_set.classes != val_set.classes:
        raise ValueError(f"train/ has {len(train_set.classes)} classes but val/ has "
                         f"{len(val_set.classes)}; the class folders must match")
    common = dict(workers=workers, seed=seed, rank=rank, world=world, device=device,
                  channels_last=channels_last)
    info = DataInfo("imagefolder", len(train_set.classes), 3, 224, train_set.classes,
                    len(train_set), len(val_set), IMAGENET_MEAN, IMAGENET_STD)
    return Data(FolderLoader(train_set, batch_size, train=True, **common),
                FolderLoader(val_set, val_batch_size, train=False, **common), info)


__all__ = ["DATASETS", "Data", "DataInfo", "IMAGENET_MEAN", "IMAGENET_STD", "ImageArrays",
           "normalization",
           "build_data", "load_arrays"]


def _tensor(array: np.ndarray) -> torch.Tensor:
    # Arrays read with np.frombuffer are read-only; torch needs a writable, contiguous buffer.
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))
