"""Gumbel sampling for binary gates: Gumbel-max, Gumbel-softmax and its straight-through form.

Pure functions over a score tensor of shape (B, 2); noise comes from ``torch.rand`` with an
optional generator so runs are reproducible and modules hold no random state.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Keeps -log(-log(u)) finite: u is clamped into [EPS, 1 - EPS].
_EPS = 1e-10


def gumbel_noise(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel(0, 1) noise with the shape, dtype and device of ``like``.

    Args:
        like: tensor whose shape/dtype/device the noise takes.
        generator: optional ``torch.Generator`` (on the same device) for reproducible draws.

    Returns:
        A tensor ``-log(-log(U))`` with ``U ~ Uniform(0, 1)``.
    """
    u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    u = u.clamp(_EPS, 1.0 - _EPS)
    return -torch.log(-torch.log(u))


def gumbel_max(scores: Tensor, noise: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """One-hot Gumbel-max sample: ``one_hot(argmax(scores + G))``, an exact categorical sample.

    Args:
        scores: unnormalised log-probabilities, shape (B, K).
        noise: Gumbel noise of the same shape; drawn when omitted.
        generator: used only when ``noise`` is omitted.

    Returns:
        A float one-hot tensor of shape (B, K) without gradient.
    """
    if noise is None:
        noise = gumbel_noise(scores, generator)
    index = (scores + noise).argmax(dim=-1, keepdim=True)
    return torch.zeros_like(scores).scatter_(-1, index, 1.0)


def gumbel_softmax(scores: Tensor, tau: float = 1.0, hard: bool = True,
                   noise: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """Gumbel-softmax relaxation, optionally straight-through (Jang et al. 2017).

    ``hard=True`` returns the one-hot Gumbel-max sample in the forward pass while the gradient
    is that of ``softmax((scores + G) / tau)`` for the same noise G (the straight-through
    estimator used to train ConvNet-AIG gates). ``hard=False`` returns the relaxation itself.

    Args:
        scores: unnormalised log-probabilities, shape (B, K).
        tau: softmax temperature (> 0).
        hard: straight-through one-hot forward when True.
        noise: Gumbel noise of the same shape; drawn when omitted.
        generator: used only when ``noise`` is omitted.

    Returns:
        Tensor of shape (B, K): one-hot (hard) or on the simplex (soft).
    """
    if tau <= 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0, got {tau}")
    if noise is None:
        noise = gumbel_noise(scores, generator)
    soft = torch.softmax((scores + noise) / tau, dim=-1)
    if not hard:
        return soft
    index = (scores + noise).argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    # Forward value: one_hot. Gradient: d soft / d scores.
    return one_hot - soft.detach() + soft
