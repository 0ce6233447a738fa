"""The inference-time fast form of a model: BatchNorm folded away, gates collapsed.

``fuse(model)`` returns an eval-only copy in which

* every BatchNorm that follows a convolution is folded into that convolution's weight and bias;
* each gate's BatchNorm1d is folded into its first linear layer, and its last layer (d -> 2) is
  collapsed to one vector and a bias giving the margin ``s_execute - s_skip``, so a gate costs a
  pooled mean, one small matmul, a ReLU and a dot product, compared with ``logit(threshold)``.

Decisions and logits equal the unfused model's up to float32 rounding.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
from torch import Tensor, nn

from aignet.nn import kernels
from aignet.nn.blocks import ResidualBlock
from aignet.nn.gated_ops import is_channels_last
from aignet.nn.gates import EXECUTE, SKIP, Gate, GateBase, float32_region, pooled_sum

# Input dtypes of the compiled gate decision (csrc/gate_decide.cpp).
_COMPILED_DTYPES = (torch.float32, torch.bfloat16)
# Shared batch-1 decisions of FusedGate._decide_one.
_OPEN = torch.ones(1)
_CLOSED = torch.zeros(1)


@functools.cache
def _averager(area: int) -> np.ndarray:
    """The vector whose dot product with ``area`` values is their mean (float32)."""
    return np.full(area, 1.0 / area, dtype=np.float32)


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


class FusedGate(GateBase):
    """Inference-only gate: ``margin = w . relu(W mean(x) + b) + c``.

    Its deterministic decision is one compiled call on CPU (``aignet.nn.kernels``), else five
    small kernels (numpy calls for one CPU image).

    Built from a trained :class:`~aignet.nn.gates.Gate` by :meth:`from_gate`; keeps its modes and
    tracked rate.
    """

    def __init__(self, weight: Tensor, bias: Tensor, vector: Tensor, offset: Tensor,
                 running_rate: Tensor) -> None:
        super().__init__(init_rate=0.5, momentum=0.0)
        # Stored transposed (C, d) so the matmul needs no transpose view per call.
        self.register_buffer("weight_t", weight.t().contiguous())
        self.register_buffer("bias", bias)
        self.register_buffer("vector", vector)
        self.register_buffer("offset", offset)
        self.offset_value = float(offset)
        self._numpy_source: Tensor | None = None
        self.running_rate.copy_(running_rate)
        self.training = False

    @classmethod
    def from_gate(cls, gate: Gate) -> FusedGate:
        """Fold ``gate.bn`` into ``gate.fc1`` and collapse ``gate.fc2`` to a margin vector."""
        with torch.no_grad():
            scale = gate.bn.weight / torch.sqrt(gate.bn.running_var + gate.bn.eps)
            weight = gate.fc1.weight * scale[:, None]
            bias = gate.bn.bias - gate.bn.running_mean * scale
            vector = gate.fc2.weight[EXECUTE] - gate.fc2.weight[SKIP]
            offset = gate.fc2.bias[EXECUTE] - gate.fc2.bias[SKIP]
        fused = cls(weight.float(), bias.float(), vector.float(), offset.float(),
                    gate.running_rate.detach().clone())
        for attr in ("train_mode", "inference", "threshold", "tau", "generator"):
            setattr(fused, attr, getattr(gate, attr))
        return fused

    def _hidden(self, x: Tensor) -> Tensor:
        area = x.shape[2] * x.shape[3]
        return torch.addmm(self.bias, pooled_sum(x), self.weight_t, alpha=1.0 / area).relu_()

    def margin(self, x: Tensor) -> Tensor:
        with float32_region(x):
            return torch.addmv(self.offset, self._hidden(x), self.vector)

    def decide(self, x: Tensor, margin_threshold: float) -> Tensor:
        compiled = kernels.usable(x)
        if compiled is not None and x.dtype in _COMPILED_DTYPES:
            # One call for pooling, MLP and comparison (csrc/gate_decide.cpp).
            return compiled.gate_decide(x, self.weight_t, self.bias, self.vector,
                                        margin_threshold - self.offset_value)
        if x.shape[0] == 1 and x.device.type == "cpu" and not torch.is_grad_enabled():
            return self._decide_one(x, margin_threshold)
        # gt_ in place keeps float32 0/1 values: no separate comparison and conversion kernels.
        with float32_region(x):
            return torch.mv(self._hidden(x), self.vector).gt_(margin_threshold - self.offset_value)

    def _decide_one(self, x: Tensor, margin_threshold: float) -> Tensor:
        """One CPU image: the gate in numpy, ~2x less dispatch overhead than torch ops.

        A float32 map is pooled by one BLAS matrix-vector product over numpy's view of its
        memory (no torch kernel at all); other dtypes are pooled by torch first.
        Returns one of two shared constant tensors (never modified by callers).
        """
        if self._numpy_source is not self.weight_t:  # buffers replaced (load, .to()): refresh
            self._numpy = (self.weight_t.t().contiguous().numpy(), self.bias.numpy(),
                           self.vector.numpy())
            self._numpy_source = self.weight_t
        weight, bias, vector = self._numpy
        hidden = weight @ self._pooled_one(x)
        hidden += bias
        np.maximum(hidden, 0.0, out=hidden)
        return _OPEN if float(hidden @ vector) > margin_threshold - self.offset_value else _CLOSED

    def _pooled_one(self, x: Tensor) -> np.ndarray:
        """Spatial mean (C,) of one image (1, C, H, W) as a float32 numpy vector."""
        area = x.shape[2] * x.shape[3]
        if x.dtype != torch.float32:
            return pooled_sum(x).numpy()[0] * np.float32(1.0 / area)
        averager = _averager(area)
        image = x.numpy()[0]
        if is_channels_last(x):  # (H, W, C) rows in memory
            return averager @ image.transpose(1, 2, 0).reshape(area, -1)
        return image.reshape(-1, area) @ averager

    def scores(self, x: Tensor) -> Tensor:
        # Softmax is shift-invariant, so (0, margin) carries the same probabilities.
        margin = self.margin(x)
        return torch.stack([torch.zeros_like(margin), margin], dim=1)

    def train(self, mode: bool = True) -> FusedGate:
        if mode:
            raise RuntimeError("a fused model is inference-only; train the unfused model and "
                               "call aignet.fuse() afterwards")
        return super().train(False)


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
