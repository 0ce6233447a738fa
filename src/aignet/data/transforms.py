"""Batch-wise augmentation and normalisation of uint8 image tensors (airbench style).

Random numbers come from a CPU ``torch.Generator`` and are moved to the data's device, so a given
seed gives the same augmentation on every device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(images: Tensor, pad: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Zero-pad by ``pad``, crop back to the original size at a random offset, maybe mirror.

    Args:
        images: (B, C, H, W) tensor of any dtype.
        pad: padding in pixels (0: no translation).
        flip: mirror each image horizontally with probability 1/2.
        generator: CPU generator for the random offsets and flips.
    """
    batch, channels, height, width = images.shape
    dev = images.device
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    flips = torch.rand(batch, generator=generator) < 0.5
    if pad:
        padded = F.pad(images, (pad, pad, pad, pad))
        rows = (dy[:, None] + torch.arange(height))[:, None, :, None].to(dev)
        cols = (dx[:, None] + torch.arange(width))[:, None, None, :].to(dev)
        b = torch.arange(batch, device=dev)[:, None, None, None]
        c = torch.arange(channels, device=dev)[None, :, None, None]
        images = padded[b, c, rows, cols]
    if flip:
        images = torch.where(flips.to(dev)[:, None, None, None], images.flip(3), images)
    return images


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float],
              dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 (B, C, H, W) in [0, 255] -> float ``(x / 255 - mean) / std``."""
    mean_t = torch.tensor(mean, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    return images.to(dtype).div_(255.0).sub_(mean_t).div_(std_t)
