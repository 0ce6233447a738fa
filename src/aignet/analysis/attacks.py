"""Adversarial attacks in [0, 1] pixel space: FGSM, PGD, expectation over transformation, JPEG,
and attacks on the gates themselves (compute inflation, gate flipping).

Every attack takes ``forward(images01) -> ModelOutput`` (see :class:`PixelModel`), so the
perturbation is applied before normalisation, as an attacker of the raw image would.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aignet.models.resnet import ModelOutput
from aignet.nn.gates import GateBase

Forward = Callable[[Tensor], ModelOutput]
Objective = Callable[[ModelOutput, list[Tensor]], Tensor]


class PixelModel(nn.Module):
    """Wraps a model so it takes [0, 1] images: normalisation is part of the forward pass."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> ModelOutput:
        return self.model((images - self.mean) / self.std)


@contextmanager
def gate_margins(model: nn.Module) -> Iterator[list[Tensor]]:
    """Collect, during forwards inside the block, each gate's differentiable margin (B,).

    The margin ``s_execute - s_skip`` is what the decision thresholds; its sigmoid is the
    execution probability, a smooth target for attacks on the gates.
    """
    margins: list[Tensor] = []

    def hook(gate: GateBase, inputs: tuple[Tensor], _output: Tensor) -> None:
        margins.append(gate.margin(inputs[0]))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, GateBase)]
    try:
        yield margins
    finally:
        for handle in handles:
            handle.remove()


def input_gradient(forward: Forward, model: nn.Module, images: Tensor, objective: Objective,
                   samples: int = 1) -> Tensor:
    """Gradient of ``objective`` w.r.t. the images, averaged over ``samples`` forward passes.

    With stochastic gates each pass draws new gate samples, so ``samples > 1`` is expectation
    over transformation (EOT, Athalye et al. 2018); ``samples = 1`` is the plain gradient.
    """
    total = torch.zeros_like(images)
    for _ in range(samples):
        x = images.detach().clone().requires_grad_(True)
        with gate_margins(model) as margins:
            out = forward(x)
            value = objective(out, margins)
        total += torch.autograd.grad(value, x)[0]
    return total / samples


def cross_entropy_objective(labels: Tensor) -> Objective:
    """Classification loss to maximise (untargeted attack)."""
    return lambda out, _margins: F.cross_entropy(out.logits.float(), labels, reduction="sum")


def inflation_objective() -> Objective:
    """Total execution probability of every gated block: maximising it slows the model down."""
    return lambda _out, margins: sum(torch.sigmoid(m).sum() for m in margins)


def flip_objective(needed: list[Tensor]) -> Objective:
    """Minus the execution probability of the blocks each image ran on the clean input."""
    return lambda _out, margins: -sum((torch.sigmoid(m) * n).sum()
                                      for m, n in zip(margins, needed, strict=True))


def fgsm(forward: Forward, model: nn.Module, images: Tensor, objective: Objective, eps: float,
         samples: int = 1) -> Tensor:
    """One signed-gradient step of size ``eps`` (Goodfellow et al. 2015), clipped to [0, 1]."""
    if eps == 0:
        return images.detach().clone()
    grad = input_gradient(forward, model, images, objective, samples)
    return (images + eps * grad.sign()).clamp(0, 1).detach()


def pgd(forward: Forward, model: nn.Module, images: Tensor, objective: Objective, eps: float,
        steps: int = 10, step_size: float | None = None, samples: int = 1,
        generator: torch.Generator | None = None, random_start: bool = True,
        score: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """L-inf projected gradient ascent (Madry et al. 2018).

    Args:
        steps: iterations; ``step_size`` defaults to 2.5 * eps / steps.
        samples: EOT gradient samples per step.
        generator: for the random start.
        random_start: start from a uniform point of the eps-ball (else from ``images``).
        score: per-image value to maximise (B,); when given, each image keeps its best iterate,
            the starting point included, so the attack never ends worse than it started.
    """
    if eps == 0:
        return images.detach().clone()
    step_size = step_size if step_size is not None else 2.5 * eps / steps
    x = images.detach().clone()
    if random_start:
        noise = torch.rand(images.shape, generator=generator, device=images.device) * 2 - 1
        x = (images + eps * noise).clamp(0, 1)
    best, best_score = x, score(x) if score is not None else None
    for _ in range(steps):
        grad = input_gradient(forward, model, x, objective, samples)
        x = x + step_size * grad.sign()
        x = torch.min(torch.max(x, images - eps), images + eps).clamp(0, 1).detach()
        if score is not None:
            current = score(x)
            better = current > best_score
            best = torch.where(better.view(-1, 1, 1, 1), x, best)
            best_score = torch.maximum(current, best_score)
    return best if score is not None else x


def jpeg_roundtrip(images: Tensor, quality: int = 75) -> tuple[Tensor, list[int]]:
    """Encode and decode each [0, 1] image as JPEG (Pillow); also return the encoded sizes."""
    from PIL import Image

    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    pixels = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    out, sizes = [], []
    for img in pixels:
        array = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        sizes.append(buffer.tell())
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            back = np.asarray(decoded.convert("L" if img.shape[0] == 1 else "RGB"))
        out.append(back[None] if img.shape[0] == 1 else back.transpose(2, 0, 1))
    decoded = torch.from_numpy(np.stack(out)).to(images.device, torch.float32) / 255
    return decoded, sizes
