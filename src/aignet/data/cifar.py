"""CIFAR-10 (binary and python layouts) and CIFAR-100 (python layout) readers.

Each returns :class:`~aignet.data.arrays.ImageArrays`: uint8 images (N, 3, 32, 32) and int64
labels for the train and test splits, plus the class names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aignet.data.arrays import ImageArrays, require_dir
from aignet.data.safe_pickle import safe_load

CIFAR_SIDE = 32
# Every file of the official CIFAR-10 binary layout holds exactly this many images.
CIFAR_BATCH_RECORDS = 10000
_RECORD = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE  # label byte + planar RGB pixels
_BINARY_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
_BINARY_TEST = "test_batch.bin"
_PY_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_BINARY_DIR = "cifar-10-batches-bin"
_PY10_DIR = "cifar-10-batches-py"
_PY100_DIR = "cifar-100-python"


def find_cifar10(root: str | Path) -> Path:
    """The CIFAR-10 folder under or at ``root`` (binary layout preferred)."""
    root = Path(root)
    for candidate in (root, root / _BINARY_DIR, root / _PY10_DIR):
        if (candidate / _BINARY_TEST).is_file() or (candidate / "test_batch").is_file():
            return candidate
    raise FileNotFoundError(
        f"no CIFAR-10 found at {root}: expected {_BINARY_DIR}/ (data_batch_1.bin ... "
        f"data_batch_5.bin, test_batch.bin, batches.meta.txt) or {_PY10_DIR}/ (data_batch_1 ... "
        "data_batch_5, test_batch, batches.meta); pass --data-dir")


def read_cifar10(root: str | Path) -> ImageArrays:
    """Read CIFAR-10 from ``root`` in the binary or the python layout."""
    folder = find_cifar10(root)
    if (folder / _BINARY_TEST).is_file():
        return _read_binary(folder)
    return _read_python10(folder)


def _read_binary_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"missing CIFAR-10 file {path}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {_RECORD}-byte "
                         "CIFAR-10 records (truncated or corrupt file)")
    records = raw.reshape(-1, _RECORD)
    expected = CIFAR_BATCH_RECORDS  # read at call time (tests use small files)
    if len(records) != expected:
        raise ValueError(f"{path}: {len(records)} records, expected {expected} "
                         "(truncated or corrupt file; replace it from the official archive)")
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: label {labels.max()} outside 0-9 (not a CIFAR-10 file?)")
    return records[:, 1:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), labels


def _read_binary(folder: Path) -> ImageArrays:
    train = [_read_binary_file(folder / name) for name in _BINARY_TRAIN]
    test_x, test_y = _read_binary_file(folder / _BINARY_TEST)
    meta = folder / "batches.meta.txt"
    classes = [c.strip() for c in meta.read_text().splitlines() if c.strip()] \
        if meta.is_file() else [str(i) for i in range(10)]
    return ImageArrays(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                       test_x, test_y, classes)


def _python_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"missing CIFAR file {path}")
    batch = safe_load(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: not a CIFAR batch (no {b'data'!r}/{label_key!r} entries)")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * CIFAR_SIDE * CIFAR_SIDE:
        raise ValueError(f"{path}: image array has shape {data.shape}, expected (N, 3072)")
    return data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE), np.asarray(batch[label_key], np.int64)


def _read_python10(folder: Path) -> ImageArrays:
    train = [_python_batch(folder / name, b"labels") for name in _PY_TRAIN]
    test_x, test_y = _python_batch(folder / "test_batch", b"labels")
    meta = safe_load(folder / "batches.meta") if (folder / "batches.meta").is_file() else {}
    classes = [c.decode() for c in meta.get(b"label_names", [])] or [str(i) for i in range(10)]
    return ImageArrays(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                       test_x, test_y, classes)


def read_cifar100(root: str | Path) -> ImageArrays:
    """Read CIFAR-100 (python layout: ``cifar-100-python/{train,test,meta}``), fine labels."""
    root = Path(root)
    folder = root / _PY100_DIR if (root / _PY100_DIR).is_dir() else root
    require_dir(folder, "CIFAR-100", "cifar-100-python/ with train, test and meta")
    train_x, train_y = _python_batch(folder / "train", b"fine_labels")
    test_x, test_y = _python_batch(folder / "test", b"fine_labels")
    meta = safe_load(folder / "meta") if (folder / "meta").is_file() else {}
    classes = [c.decode() for c in meta.get(b"fine_label_names", [])] or \
        [str(i) for i in range(100)]
    return ImageArrays(train_x, train_y, test_x, test_y, classes)
