"""Classify image files with a trained model: ``aignet predict CHECKPOINT PATH...``.

Files, folders (every image below them) and glob patterns are accepted. Each image is decoded
(any Pillow mode, 16-bit included), resized to the model's input size (images of up to 64
pixels directly, larger ones resized and centre-cropped as in evaluation) and normalised with
the statistics stored in the checkpoint, then classified in batches with sparse execution.
Unreadable files are reported and skipped.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from aignet.data.folder_arrays import IN_MEMORY_MAX_SIZE
from aignet.data.imagefolder import CROP, EXTENSIONS, RESIZE, center_crop, to_rgb8
from aignet.data.transforms import normalize
from aignet.engine.inference import Predictor
from aignet.training.checkpoint import load_model
from aignet.training.progress import Progress


def expand_paths(paths: list[str]) -> list[Path]:
    """Files as given, every image under a folder, and the matches of glob patterns."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS)
        elif path.exists() or not glob.has_magic(text):
            found.append(path)  # a missing file is reported per image
        else:
            found += sorted(Path(p) for p in glob.glob(text, recursive=True))
    if not found:
        raise FileNotFoundError(f"no image files found in {', '.join(paths)}")
    return found


def load_image(path: Path, size: int, in_chans: int) -> np.ndarray:
    """uint8 (C, size, size) as the model expects it."""
    from PIL import Image

    with Image.open(path) as img:
        img = to_rgb8(img)
        if size <= IN_MEMORY_MAX_SIZE:
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        else:
            img = center_crop(img, size, round(size * RESIZE / CROP))
        if in_chans == 1:
            img = img.convert("L")
        array = np.asarray(img, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _batches(files: list[Path], size: int, in_chans: int, batch_size: int,
             errors: dict[Path, str]) -> Iterator[tuple[list[Path], np.ndarray]]:
    chunk, arrays = [], []
    for path in files:
        try:
            arrays.append(load_image(path, size, in_chans))
            chunk.append(path)
        except (OSError, ValueError) as err:
            errors[path] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if len(chunk) == batch_size:
            yield chunk, np.stack(arrays)
            chunk, arrays = [], []
    if chunk:
        yield chunk, np.stack(arrays)


def predict_files(source: str, paths: list[str], *, top_k: int = 5, batch_size: int = 64,
                  mode: str = "deterministic", threshold: float = 0.5,
                  device: str = "cpu", progress: bool = True) -> list[dict]:
    """Classify image files with a trained model (a checkpoint or ``MODEL/TAG``).

    Returns:
        One dict per file, in order: ``file``, ``top`` (list of ``class``, ``index``,
        ``probability``), ``executed_blocks``, ``macs``; or ``file`` and ``error``.
    """
    model = load_model(source, device)
    cfg = model.pretrained_cfg
    predictor = Predictor(model, mode=mode, threshold=threshold, channels_last=True)
    files = expand_paths(paths)
    errors: dict[Path, str] = {}
    results: dict[Path, dict] = {}
    bar = Progress(len(files), "predict", enabled=progress)
    for chunk, images in _batches(files, cfg["input_size"], cfg["in_chans"], batch_size, errors):
        x = normalize(torch.from_numpy(images).to(device), cfg["mean"], cfg["std"])
        for path, row in zip(chunk, predictor.classify(x, top_k), strict=True):
            row["top"] = [{"class": cfg["classes"][i], "index": i, "probability": round(p, 5)}
                          for i, p in row["top"]]
            results[path] = {"file": str(path), **row}
        bar.update(len(results) + len(errors))
    for path, message in errors.items():
        print(f"note: skipped {path} ({message})", file=sys.stderr)
    return [results.get(p) or {"file": str(p), "error": errors[p]} for p in files]
