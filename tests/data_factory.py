"""Small data sets written by the tests in the official on-disk formats."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


def learnable_images(n: int, side: int, channels: int, classes: int, seed: int):
    """Noise images with a bright patch whose position encodes the class (easy to learn)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 60, (n, channels, side, side), dtype=np.uint8)
    patch = side // 4
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[i, :, row * patch:(row + 1) * patch, col * patch:(col + 1) * patch] = 230
    return images, labels.astype(np.uint8)


def _idx_bytes(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, n_train: int = 256, n_test: int = 128, side: int = 28,
                      seed: int = 0) -> Path:
    """An MNIST-format data set (gzip IDX) of learnable 1-channel images."""
    folder.mkdir(parents=True, exist_ok=True)
    tx, ty = learnable_images(n_train, side, 1, 10, seed)
    vx, vy = learnable_images(n_test, side, 1, 10, seed + 1)
    for name, array in zip(IDX_FILES, (tx[:, 0], ty, vx[:, 0], vy), strict=True):
        (folder / f"{name}.gz").write_bytes(gzip.compress(_idx_bytes(array)))
    return folder


def write_cifar_binary(folder: Path, per_file: int = 20, seed: int = 0) -> Path:
    """cifar-10-batches-bin/ with ``per_file`` records in each of the six files."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for k, name in enumerate(names):
        x, y = learnable_images(per_file, 32, 3, 10, seed + k)
        records = np.concatenate([y[:, None], x.reshape(per_file, -1)], axis=1)
        (folder / name).write_bytes(records.astype(np.uint8).tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    return folder


def write_cifar_python(folder: Path, per_file: int = 20, seed: int = 0) -> Path:
    """cifar-10-batches-py/ pickles as the official release holds them (bytes keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        x, y = learnable_images(per_file, 32, 3, 10, seed + k)
        batch = {b"data": x.reshape(per_file, -1), b"labels": [int(v) for v in y],
                 b"batch_label": b"batch"}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder
