"""Batches of a small in-memory data set, on the training device, augmented batch-wise.

Order and augmentation of batch ``step`` in epoch ``epoch`` depend only on (seed, epoch, step),
so a resumed run replays exactly the batches an uninterrupted one would see, and under DDP the N
ranks' slices of a global batch are the batch a single process would see.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from aignet.data.transforms import normalize, random_crop_flip

# Decorrelates the per-batch generator seeds of different epochs/steps.
_EPOCH_STRIDE = 1_000_003


@dataclass(frozen=True)
class Augment:
    """Batch-wise augmentation: random translation by up to ``pad`` pixels and mirroring."""

    pad: int = 4
    flip: bool = True


class TensorLoader:
    """Iterates normalised (images, labels) batches of uint8 tensors.

    Args:
        images: uint8 (N, C, H, W), moved to ``device`` once.
        labels: int64 (N,).
        batch_size: global batch size (divided over ``world`` ranks).
        mean, std: per-channel normalisation in [0, 1] pixel units.
        train: shuffle, augment and drop the last incomplete batch.
        augment: augmentation for training (None: none).
        seed: base seed of order and augmentation.
        rank, world: this process's slice of every global batch.
        device: where batches live.
        channels_last: deliver channels_last tensors.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, mean: Sequence[float],
                 std: Sequence[float], *, train: bool, augment: Augment | None = None,
                 seed: int = 0, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu", channels_last: bool = False) -> None:
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.local_batch = batch_size // world
        self.mean, self.std = tuple(mean), tuple(std)
        self.train = train
        self.augment = augment if train else None
        self.seed, self.rank, self.world = seed, rank, world
        self.channels_last = channels_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    @property
    def num_images(self) -> int:
        """Images in the data set (all ranks together)."""
        return len(self.labels)

    def _order(self) -> Tensor:
        if not self.train:
            return torch.arange(len(self.labels))
        gen = torch.Generator().manual_seed(self.seed * _EPOCH_STRIDE + self.epoch)
        return torch.randperm(len(self.labels), generator=gen)

    def iter_from(self, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``start``, ``start + 1``, ... of the current epoch (this rank's slice)."""
        order = self._order()
        for step in range(start, len(self)):
            index = order[step * self.batch_size:(step + 1) * self.batch_size]
            images = self.images[index.to(self.images.device)]
            if self.augment is not None:
                gen = torch.Generator().manual_seed(
                    (self.seed * _EPOCH_STRIDE + self.epoch) * _EPOCH_STRIDE + step)
                images = random_crop_flip(images, self.augment.pad, self.augment.flip, gen)
            part = self._rank_slice(len(index))
            x = normalize(images[part], self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[index.to(self.labels.device)][part]

    def _rank_slice(self, size: int) -> slice:
        if self.world == 1:
            return slice(None)
        per = -(-size // self.world)
        return slice(self.rank * per, min(size, (self.rank + 1) * per))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iter_from(0)
