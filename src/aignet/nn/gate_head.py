"""The training gate's head as one compiled call each way (``csrc/gate_head.cpp``).

From the pooled block input to the factor ``g``, a training :class:`~aignet.nn.gates.Gate` runs
Linear -> BatchNorm1d -> ReLU -> Linear and a Gumbel sample: about 20 tiny kernels forward and as
many backward, on (B, d) = (128, 16) tensors, where dispatch and autograd bookkeeping cost more
than the arithmetic (~0.5 ms a gate per training step). :func:`train_gate_head` computes the same
values and gradients in one kernel call each way, draws its noise with the same ``torch.rand``
call as :func:`~aignet.nn.gumbel.gumbel_noise` (seeded runs see the same samples), and updates
the BatchNorm's running statistics as ``nn.BatchNorm1d`` does. :func:`applies` says when it can
run; elsewhere the module path runs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from aignet.nn import kernels

_MODES = {"hard": 0, "soft": 1, "threshold": 2}


class _TrainGateHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pooled: Tensor, w1: Tensor, bn_weight: Tensor, bn_bias: Tensor, w2: Tensor,
                b2: Tensor, state: tuple) -> Tensor:
        running_mean, running_var, uniform, momentum, eps, tau, mode, margin = state
        g, normalized, invstd, hidden, prob = kernels.load().gate_head_forward(
            pooled, w1, bn_weight, bn_bias, running_mean, running_var, w2, b2, uniform,
            momentum, eps, tau, mode, margin)
        ctx.save_for_backward(pooled, w1, bn_weight, w2, normalized, invstd, hidden, prob)
        ctx.tau = tau
        return g

    @staticmethod
    @once_differentiable  # the compiled backward records no graph of its own
    def backward(ctx, grad_g: Tensor) -> tuple[Tensor | None, ...]:
        grads = kernels.load().gate_head_backward(grad_g.contiguous(), *ctx.saved_tensors,
                                                  ctx.tau)
        return (*grads, None)


def applies(gate: nn.Module, x: Tensor) -> bool:
    """Whether :func:`train_gate_head` can stand in for the module path of ``gate`` (a
    :class:`~aignet.nn.gates.Gate`: ``fc1``, ``bn``, ``fc2``) on its input ``x``."""
    bn = gate.bn
    params = (gate.fc1.weight, bn.weight, gate.fc2.weight)
    return (x.shape[0] > 1 and bn.affine and bn.track_running_stats
            and all(p is not None and p.dtype == torch.float32 for p in params)
            and not any(m._forward_hooks or m._forward_pre_hooks  # hooks must see their calls
                        for m in (gate.fc1, bn, gate.fc2))
            and kernels.usable(x) is not None)


def train_gate_head(gate: nn.Module, pooled: Tensor, margin_threshold: float) -> Tensor:
    """``g`` (B,) of a training gate from its pooled input (B, C), as the module path gives it.

    Args:
        gate: a :class:`~aignet.nn.gates.Gate` (its layers, ``train_mode``, ``tau`` and
            ``generator`` are used).
        pooled: spatial mean of the block input, float32.
        margin_threshold: ``threshold_logit(gate.threshold)`` (threshold mode).
    """
    bn = gate.bn
    bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    mode = _MODES[gate.train_mode]
    uniform = None
    if mode != _MODES["threshold"]:  # the draw of gumbel_noise(scores)
        uniform = torch.rand((pooled.shape[0], 2), generator=gate.generator,
                             device=pooled.device, dtype=torch.float32)
    state = (bn.running_mean, bn.running_var, uniform, float(momentum), float(bn.eps),
             float(gate.tau), mode, float(margin_threshold))
    return _TrainGateHead.apply(pooled.float().contiguous(), gate.fc1.weight, bn.weight,
                                bn.bias, gate.fc2.weight, gate.fc2.bias, state)
