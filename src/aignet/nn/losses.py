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


def distillation_loss(logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, batch mean (Hinton et al.).

    The ``T^2`` factor keeps the gradient scale independent of the temperature.
    """
    log_p = F.log_softmax(logits.float() / temperature, dim=-1)
    log_q = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
    return kl * temperature ** 2


def annealed_targets(targets: Tensor, start: float, progress: float) -> Tensor:
    """Target rates moved linearly from ``start`` (at progress 0) to ``targets`` (at 1).

    A target-rate warm-up: gates that open with probability ``start`` are asked to close
    gradually instead of all at once. Ungated layers (target 1) stay at 1.
    """
    progress = min(max(progress, 0.0), 1.0)
    moved = start + (targets - start) * progress
    return torch.where(targets < 1.0, moved, targets)


class LossTerms(NamedTuple):
    """The total loss and its parts (for logging)."""

    total: Tensor
    classification: Tensor
    target_rate: Tensor
    distillation: Tensor | None = None


class AIGLoss(nn.Module):
    """Cross-entropy on the logits plus ``weight`` times the target-rate loss on the gates.

    With teacher logits, the classification term becomes
    ``(1 - distill_weight) * CE + distill_weight * distillation_loss(T)``.

    Args:
        targets: per-block target rates (``model.target_rates``).
        weight: lambda (2 in the papers).
        label_smoothing: passed to the cross-entropy.
        distill_weight: share of the distillation term in the classification loss, in [0, 1].
        temperature: distillation temperature T.
    """

    def __init__(self, targets: Sequence[float], weight: float = DEFAULT_TARGET_WEIGHT,
                 label_smoothing: float = 0.0, distill_weight: float = 0.0,
                 temperature: float = 1.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"target-rate loss weight must be >= 0, got {weight}")
        if not 0.0 <= distill_weight <= 1.0:
            raise ValueError(f"distillation weight must be in [0, 1], got {distill_weight}")
        self.distill_weight = distill_weight
        self.temperature = temperature
        self.register_buffer("targets", torch.tensor(list(targets), dtype=torch.float32),
                             persistent=False)
        self.weight = weight
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, gates: Tensor, labels: Tensor,
                rates: Tensor | None = None, teacher_logits: Tensor | None = None,
                targets: Tensor | None = None) -> LossTerms:
        """Args: model logits, gates (B, L), labels (B,); optionally precomputed rates (L,)
        (the global-batch rates under DDP; by default the batch rates of ``gates``), a
        teacher's logits (B, K) and the current targets (L,) (a warm-up; default: the final)."""
        ce = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        if rates is None:
            rates = execution_rates(gates)
        tr = target_rate_loss(rates, self.targets if targets is None else targets, self.weight)
        if teacher_logits is None or self.distill_weight == 0:
            return LossTerms(ce + tr, ce, tr)
        kd = distillation_loss(logits, teacher_logits, self.temperature)
        cls = (1 - self.distill_weight) * ce + self.distill_weight * kd
        return LossTerms(cls + tr, ce, tr, kd)
