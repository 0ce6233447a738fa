"""The ConvNet-AIG objective: cross-entropy + lambda * target-rate loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# lambda of the papers.
DEFAULT_TARGET_WEIGHT = 2.0


def execution_rates(gates: Tensor) -> Tensor:
    """Per-layer batch execution rate: the batch mean of the gate values, shape (L,)."""
    return gates.float().mean(dim=0)


def target_rate_loss(rates: Tensor, targets: Tensor | Sequence[float],
                     weight: float = DEFAULT_TARGET_WEIGHT) -> Tensor:
    """``weight * mean over gated layers of (rate_l - t_l)^2``; layers with ``t_l = 1`` excluded.

    Args:
        rates: per-layer execution rates (L,), e.g. :func:`execution_rates` of the batch (or of
            the global batch under DDP).
        targets: per-layer target rates (L,).
        weight: lambda.

    Returns:
        A scalar tensor (0 with a gradient path when no layer is gated).
    """
    targets = torch.as_tensor(targets, dtype=rates.dtype, device=rates.device)
    if targets.shape != rates.shape:
        raise ValueError(f"{rates.numel()} execution rates but {targets.numel()} target rates")
    # A mask instead of boolean indexing keeps shapes static (torch.compile friendly).
    mask = (targets < 1.0).to(rates.dtype)
    squared = (rates - targets).pow(2) * mask
    return weight * squared.sum() / mask.sum().clamp(min=1.0)


class LossTerms(NamedTuple):
    """The total loss and its two parts (for logging)."""

    total: Tensor
    classification: Tensor
    target_rate: Tensor


class AIGLoss(nn.Module):
    """Cross-entropy on the logits plus ``weight`` times the target-rate loss on the gates.

    Args:
        targets: per-block target rates (``model.target_rates``).
        weight: lambda (2 in the papers).
        label_smoothing: passed to the cross-entropy.
    """

    def __init__(self, targets: Sequence[float], weight: float = DEFAULT_TARGET_WEIGHT,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"target-rate loss weight must be >= 0, got {weight}")
        self.register_buffer("targets", torch.tensor(list(targets), dtype=torch.float32),
                             persistent=False)
        self.weight = weight
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, gates: Tensor, labels: Tensor,
                rates: Tensor | None = None) -> LossTerms:
        """Args: model logits, gates (B, L), labels (B,), and optionally precomputed rates (L,)
        (the global-batch rates under DDP); by default the batch rates of ``gates``."""
        ce = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        if rates is None:
            rates = execution_rates(gates)
        tr = target_rate_loss(rates, self.targets, self.weight)
        return LossTerms(ce + tr, ce, tr)
