"""Stochastic depth (Huang et al. 2016) expressed as a fixed-rate gate.

During training each image keeps the residual branch with probability ``survival``; at test time
every branch runs scaled by ``survival`` (the original formulation, not inverted dropout).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def linear_survival(num_blocks: int, last: float = 0.5) -> list[float]:
    """Survival probabilities decaying linearly from 1 (input) to ``last`` (final block)."""
    if not 0.0 <= last <= 1.0:
        raise ValueError(f"stochastic-depth survival must be in [0, 1], got {last}")
    return [1.0 - (i + 1) / num_blocks * (1.0 - last) for i in range(num_blocks)]


class SurvivalGate(nn.Module):
    """Bernoulli(survival) per image while training, the constant ``survival`` in eval."""

    def __init__(self, survival: float) -> None:
        super().__init__()
        self.survival = float(survival)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        if self.training:
            return (torch.rand(batch, device=x.device) < self.survival).float()
        return torch.full((batch,), self.survival, device=x.device)

    @property
    def binary(self) -> bool:
        """0/1 samples while training; a constant scale (not binary) in eval."""
        return self.training

    def extra_repr(self) -> str:
        return f"survival={self.survival:.3f}"
