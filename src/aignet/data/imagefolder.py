"""ImageNet-layout folders (``root/{train,val}/<class>/*``) decoded with Pillow in workers.

Train: random-resized crop to 224 (scale 0.08-1, aspect 3/4-4/3) + horizontal flip. Eval: resize
to 256x256, then a 224 centre crop (the ConvNet-AIG protocol). ImageNet normalisation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from aignet.data.arrays import require_dir

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP, RESIZE = 224, 256
# Matched without case: .JPG, .Png ... count too.
EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}


def scan_folder(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """(path, class index) of every image under ``root/<class>/``, classes sorted by name."""
    require_dir(root, "image folder", "one sub-folder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise FileNotFoundError(f"{root} has no class sub-folders (expected root/<class>/*.jpg)")
    samples = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise ValueError(f"class folder {root / name} holds no images "
                             f"({', '.join(sorted(EXTENSIONS))})")
        samples += [(p, index) for p in files]
    return samples, classes


def to_rgb8(img):
    """An 8-bit RGB copy of a Pillow image of any mode.

    16-bit grayscale (modes I;16 and I, as Pillow opens 16-bit PNGs) is scaled from 0-65535 to
    0-255 first: ``convert("RGB")`` clips it, turning most of such an image white.
    """
    if img.mode.startswith("I"):
        from PIL import Image

        array = np.asarray(img).astype(np.int64)
        if img.mode.startswith("I;16") or array.max() > 255:
            array = array >> 8  # the 16-bit range onto 8 bits
        img = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return img.convert("RGB")


class ImageFolder(Dataset):
    """Decodes one image per item; returns None for an undecodable file unless ``strict``."""

    def __init__(self, samples: list[tuple[Path, int]], classes: list[str], train: bool,
                 strict: bool = False, size: int = CROP) -> None:
        self.samples, self.classes = samples, classes
        self.train, self.strict, self.size = train, strict, size

    def __len__(self) -> int:
        return len(self.samples)


    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                img = to_rgb8(img)
                img = random_resized_crop(img, self.size) if self.train else \
                    center_crop(img, self.size, round(self.size * RESIZE / CROP))
        except (OSError, UnidentifiedImageError, ValueError) as err:
            if self.strict:
                raise ValueError(f"cannot decode {path}: {err}") from None
            return None  # counted by the loader, reported in the log and at the end of the run
        if self.train and random.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()
        return torch.from_numpy(array), label


def random_resized_crop(img, size: int = CROP, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Inception-style crop: random area fraction and aspect ratio, resized to ``size``."""
    width, height = img.size
    area = width * height
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = random.randint(0, width - w), random.randint(0, height - h)
            return img.resize((size, size), box=(left, top, left + w, top + h))
    return center_crop(img, size)


def center_crop(img, size: int = CROP, resize: int = RESIZE):
    """Resize to ``resize`` x ``resize`` and crop the central ``size`` x ``size``."""
    img = img.resize((resize, resize))
    offset = (resize - size) // 2
    return img.crop((offset, offset, offset + size, offset + size))


def collate_skipping(batch: list) -> tuple[Tensor, Tensor, int]:
    """Stack decodable items; also return how many were skipped."""
    good = [item for item in batch if item is not None]
    if not good:
        empty = torch.empty(0, 3, CROP, CROP, dtype=torch.uint8)
        return empty, torch.empty(0, dtype=torch.int64), len(batch)
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), \
        len(batch) - len(good)


class FolderLoader:
    """DataLoader over an :class:`ImageFolder` with the TensorLoader interface."""

    def __init__(self, dataset: ImageFolder, batch_size: int, *, train: bool, workers: int,
                 seed: int, rank: int, world: int, device: torch.device,
                 channels_last: bool) -> None:
        from torch.utils.data.distributed import DistributedSampler

        self.dataset, self.train, self.seed = dataset, train, seed
        self.sampler = DistributedSampler(dataset, world, rank, shuffle=train, seed=seed,
                                          drop_last=train) if world > 1 else None
        self.loader_args = dict(batch_size=batch_size // world, num_workers=workers,
                                collate_fn=collate_skipping, drop_last=train,
                                pin_memory=device.type == "cuda", persistent_workers=False)
        self.device, self.channels_last = device, channels_last
        self.epoch, self.skipped = 0, 0
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    @property
    def num_images(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        local = len(self.sampler) if self.sampler is not None else len(self.dataset)
        per = self.loader_args["batch_size"]
        return local // per if self.train else -(-local // per)

    def iter_from(self, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        from aignet.data.transforms import normalize

        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        loader = DataLoader(self.dataset, sampler=self.sampler,
                            shuffle=self.train and self.sampler is None, generator=gen,
                            **self.loader_args)
        for step, (images, labels, skipped) in enumerate(loader):
            self.skipped += skipped
            if step < start or len(labels) == 0:
                continue
            x = normalize(images.to(self.device, non_blocking=True), IMAGENET_MEAN, IMAGENET_STD)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iter_from(0)
