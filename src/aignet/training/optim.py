"""SGD with two parameter groups (gates, the rest) and a per-step learning-rate schedule."""

from __future__ import annotations

import bisect
import math

import torch
from torch import nn

from aignet.models.resnet_weights import GATE_KEY
from aignet.training.config import OptimConfig


def parameter_groups(model: nn.Module, lr: float, gate_lr_factor: float) -> list[dict]:
    """Gate parameters (``*.gate.*``) at ``lr * gate_lr_factor``, everything else at ``lr``;
    parameters that need no gradient are left out."""
    gates, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (gates if GATE_KEY in f".{name}" else rest).append(param)
    groups = [{"params": rest, "lr": lr, "name": "network"},
              {"params": gates, "lr": lr * gate_lr_factor, "name": "gates"}]
    return [g for g in groups if g["params"]]  # a frozen network or a model without gates


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay over :func:`parameter_groups`.

    ``foreach``: one multi-tensor kernel per update instead of a loop over parameters (PyTorch
    takes it by default on GPUs only); the same arithmetic, about 1 ms less per CIFAR ResNet-56
    step on the CPU, more for AIG models (five gate parameters per block).
    """
    return torch.optim.SGD(parameter_groups(model, cfg.lr, cfg.gate_lr_factor), lr=cfg.lr,
                           momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov and cfg.momentum > 0, foreach=True)


def lr_factor(epoch: float, cfg: OptimConfig, epochs: int) -> float:
    """Multiplier of the base learning rates at a (fractional) epoch.

    Linear warm-up over ``warmup_epochs``, then ``step`` (times gamma at each milestone) or
    ``cosine`` (to ``min_lr``).
    """
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1e-8) / cfg.warmup_epochs
    if cfg.schedule == "step":
        return cfg.gamma ** bisect.bisect_right(sorted(cfg.milestones), epoch)
    floor = cfg.min_lr / cfg.lr
    progress = min(1.0, (epoch - cfg.warmup_epochs) / max(epochs - cfg.warmup_epochs, 1e-8))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimisation step."""
    steps = max(steps_per_epoch, 1)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step / steps, cfg, epochs))
