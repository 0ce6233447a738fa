"""The inference-only gate of a fused model: BatchNorm folded, the last layer collapsed.

``margin = w . relu(W mean(x) + b) + c`` is ``s_execute - s_skip`` of the trained gate, compared
with ``logit(threshold)``: a pooled mean, one small matmul, a ReLU and a dot product.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from aignet.nn import kernels
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

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.offset_value = float(self.offset)  # the decisions read this copy, not the buffer

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
