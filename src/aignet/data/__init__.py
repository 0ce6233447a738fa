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
from aignet.data.folder_arrays import (
    IN_MEMORY_MAX_SIZE,
    channel_stats,
    first_image_size,
    read_folder_arrays,
    split_samples,
)
from aignet.data.imagefolder import CROP, IMAGENET_MEAN, IMAGENET_STD, FolderLoader, ImageFolder
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


@dataclass(frozen=True)
class FolderOptions:
    """How an image folder is read (``data.image_size``, ``data.val_fraction``)."""

    image_size: int | None = None  # None: the first image's size if small, else 224
    val_fraction: float = 0.0  # hold-out of train/ when there is no val/


def build_data(name: str, root: str | Path | None, batch_size: int, *,
               val_batch_size: int | None = None, augment: bool = True, seed: int = 0,
               rank: int = 0, world: int = 1, device: torch.device | str = "cpu",
               channels_last: bool = False, workers: int = 4, strict: bool = False,
               limit_train: int | None = None, limit_val: int | None = None,
               folder: FolderOptions = FolderOptions()) -> Data:
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
        workers: DataLoader workers (large image folders).
        strict: fail on undecodable images instead of skipping them (image folders).
        limit_train, limit_val: use only the first N images (a random subset of an image
            folder: its images are shuffled once, seeded).
        folder: image size and hold-out of an image folder.
    """
    device = torch.device(device)
    val_batch_size = val_batch_size or batch_size
    common = dict(seed=seed, rank=rank, world=world, device=device, channels_last=channels_last)
    if name == "imagefolder":
        if root is None:
            raise ValueError("imagefolder needs --data-dir pointing at a folder with train/ "
                             "(and val/, or set data.val_fraction)")
        root = Path(root)
        size = folder.image_size or min(first_image_size(root), CROP)
        if size > IN_MEMORY_MAX_SIZE:
            return _build_large_folder(root, size, folder.val_fraction, batch_size,
                                       val_batch_size, workers, strict, limit_train, limit_val,
                                       common)
        arrays = _small_folder_arrays(root, size, folder.val_fraction, seed, strict)
        mean, std = channel_stats(arrays.train_images[:SMALL_FOLDER_STATS_IMAGES])
        augmentation = Augment(pad=max(1, size // 8), flip=True)
    else:
        arrays = load_arrays(name, root)
        spec = SPECS[name]
        mean, std, augmentation = spec.mean, spec.std, spec.augment
    train_x, train_y = arrays.train_images[:limit_train], arrays.train_labels[:limit_train]
    val_x, val_y = arrays.test_images[:limit_val], arrays.test_labels[:limit_val]
    train = TensorLoader(_tensor(train_x), _tensor(train_y), batch_size, train=True,
                         augment=augmentation if augment else None, mean=mean, std=std,
                         **common)
    val = TensorLoader(_tensor(val_x), _tensor(val_y), val_batch_size, train=False, mean=mean,
                       std=std, **common)
    info = DataInfo(name, len(arrays.classes), train_x.shape[1], train_x.shape[2],
                    list(arrays.classes), len(train_y), len(val_y), mean, std)
    return Data(train, val, info)


# Normalisation statistics of a small folder come from (at most) this many training images.
SMALL_FOLDER_STATS_IMAGES = 10000


def _small_folder_arrays(root: Path, size: int, val_fraction: float, seed: int,
                         strict: bool) -> ImageArrays:
    """A small image folder decoded once and cached like the other in-memory data sets."""
    cache = _cache_path(f"imagefolder-{size}-{val_fraction}-{seed}", root)
    if cache is not None and cache.is_file():
        cached = _read_cache(cache)
        if cached is not None:
            return cached
    arrays, skipped = read_folder_arrays(root, size, val_fraction, seed, strict)
    if skipped:
        print(f"note: skipped {len(skipped)} undecodable images (first: {skipped[0]})",
              file=sys.stderr)
    if cache is not None:
        _write_cache(cache, arrays)
    return arrays


def _build_large_folder(root, size, val_fraction, batch_size, val_batch_size, workers, strict,
                        limit_train, limit_val, common) -> Data:
    """ImageNet-style folders: decoding in DataLoader workers, random-resized crops."""
    train_samples, val_samples, classes, note = split_samples(root, val_fraction, common["seed"])
    if note:
        print(note, file=sys.stderr)
    rng = np.random.default_rng(common["seed"])
    if limit_train:
        train_samples = [train_samples[i] for i in sorted(rng.permutation(len(train_samples))
                                                          [:limit_train])]
    if limit_val:
        val_samples = [val_samples[i] for i in sorted(rng.permutation(len(val_samples))
                                                      [:limit_val])]
    train_set = ImageFolder(train_samples, classes, train=True, strict=strict, size=size)
    val_set = ImageFolder(val_samples, classes, train=False, strict=strict, size=size)
    info = DataInfo("imagefolder", len(classes), 3, size, classes, len(train_set),
                    len(val_set), IMAGENET_MEAN, IMAGENET_STD)
    return Data(FolderLoader(train_set, batch_size, train=True, workers=workers, **common),
                FolderLoader(val_set, val_batch_size, train=False, workers=workers, **common),
                info)


__all__ = ["DATASETS", "Data", "DataInfo", "FolderOptions", "IMAGENET_MEAN", "IMAGENET_STD",
           "ImageArrays", "normalization",
           "build_data", "load_arrays"]


def _tensor(array: np.ndarray) -> torch.Tensor:
    # Arrays read with np.frombuffer are read-only; torch needs a writable, contiguous buffer.
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))
