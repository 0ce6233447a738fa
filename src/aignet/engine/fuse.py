"""The inference-time fast form of a model: BatchNorm folded away, gates collapsed.

``fuse(model)`` returns an eval-only copy in which

* every BatchNorm that follows a convolution is folded into that convolution's weight and bias;
* each gate's BatchNorm1d is folded into its first linear layer, and its last layer (d -> 2) is
  collapsed to one vector and a bias giving the margin ``s_execute - s_skip``, so a gate costs a
  pooled mean, one small matmul, a ReLU and a dot product, compared with ``logit(threshold)``.

Decisions and logits equal the unfused model's up to float32 rounding. The fused model runs
its inference forward pass as one compiled call where it can
(:mod:`aignet.engine.compiled_forward`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from aignet.engine.compiled_forward import CompiledForward
from aignet.engine.fused_gate import FusedGate
from aignet.models.resnet import ResNet
from aignet.nn.blocks import ResidualBlock
from aignet.nn.gates import Gate, GateBase


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution computing ``bn(conv(x))`` with BatchNorm's running statistics."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def eval_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode whose gates share the original's generators.

    ``torch.Generator`` objects cannot be deep-copied, so they are detached for the copy and
    attached to both models again afterwards.
    """
    gates = [m for m in model.modules() if isinstance(m, GateBase)]
    generators = [g.generator for g in gates]
    for gate in gates:
        gate.generator = None
    try:
        copied = copy.deepcopy(model).eval()
    finally:
        for gate, generator in zip(gates, generators, strict=True):
            gate.generator = generator
    copies = [m for m in copied.modules() if isinstance(m, GateBase)]
    for gate, generator in zip(copies, generators, strict=True):
        gate.generator = generator
    return copied


def fuse(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """An eval-only copy of ``model`` with BatchNorms folded and gates collapsed.

    Args:
        model: an aignet ResNet (gated or dense); left unchanged.
        channels_last: also convert the copy to ``torch.channels_last`` memory format.

    Returns:
        The fused copy, in eval mode, with ``is_fused = True``.
    """
    fused = eval_copy(model)
    _fold_stem(fused)
    for block in list(fused.modules()):
        if isinstance(block, ResidualBlock):
            _fuse_block(block)
    fused.is_fused = True
    fused.eval()
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    if isinstance(fused, ResNet):
        fused.fast_forward = CompiledForward(fused)
    return fused


def _fold_stem(model: nn.Module) -> None:
    if getattr(model, "bn1", None) is not None and isinstance(model.bn1, nn.BatchNorm2d):
        model.conv1 = fold_conv_bn(model.conv1, model.bn1)
        model.bn1 = nn.Identity()


def _fuse_block(block: ResidualBlock) -> None:
    for conv_name, bn_name in block.conv_bn_pairs:
        setattr(block, conv_name, fold_conv_bn(getattr(block, conv_name), getattr(block, bn_name)))
        setattr(block, bn_name, nn.Identity())
    ds = block.downsample
    if isinstance(ds, nn.Sequential) and len(ds) == 2 and isinstance(ds[1], nn.BatchNorm2d):
        block.downsample = nn.Sequential(fold_conv_bn(ds[0], ds[1]), nn.Identity())
    if isinstance(block.gate, Gate):
        block.gate = FusedGate.from_gate(block.gate)
