"""Autograd functions for the two places a gate touches a block's activations.

Written by hand because autograd's generic formulas cost full-size passes that a gated block
does not need (measured in ``benchmarks/train_speed.py``):

* :func:`spatial_mean` (the gate's pooling): ``x.mean((2, 3), dtype=float32)`` copies a bf16
  input to float32 in the forward pass, and its backward materialises ``expand(grad) / HW`` in
  float32 before casting it back. Here the sum is taken in the input's dtype (the reduction
  accumulates in float32), over the NHWC rows when channels_last, and the backward returns the
  gradient in the input's dtype: a broadcast view in float32, a materialised map in x's layout
  in reduced precision (where autograd's addition of a broadcast view is slow).
* :func:`gated_merge`, ``relu(shortcut + g * residual)``: a backward that saves only the output
  (for the ReLU mask) and the residual, with the gate's gradient as one row-wise dot product.
  On CPU in float32 and bf16 it runs as one compiled pass each way (:mod:`aignet.nn.kernels`,
  ``csrc/gated_merge.cpp``), which also returns the output's spatial mean: the next block's
  gate pools exactly that map, so :func:`spatial_mean` takes the mean from there and the
  pooling's backward pass folds into the merge's. Elsewhere (no compiler, another device or
  dtype) the PyTorch reference runs: ``addcmul`` and an in-place ReLU forward, the ReLU mask,
  the product and the dot product backward.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from aignet.nn import kernels


class _SpatialMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.shape, ctx.dtype, ctx.channels_last = x.shape, x.dtype, is_channels_last(x)
        b, c, h, w = x.shape
        if ctx.channels_last:  # a reduction over the rows of the NHWC view: 6x faster
            total = x.permute(0, 2, 3, 1).reshape(b, h * w, c).sum(dim=1)
        else:
            total = x.sum(dim=(2, 3))
        return total.float() / (h * w)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        b, c, h, w = ctx.shape
        rows = (grad / (h * w)).to(ctx.dtype)
        if ctx.dtype == torch.float32:
            return rows[:, :, None, None].expand(ctx.shape)
        # Autograd adds this gradient to the branch's and the shortcut's gradients of x. In bf16
        # adding a broadcast view is ~10x slower than materialising it in x's layout and adding
        # that (2.6 ms against 0.3 + 0.25 ms for a 128x16x32x32 map, benchmarks/train_speed.py).
        if ctx.channels_last:
            nhwc = rows[:, None, :].expand(b, h * w, c).contiguous()
            return nhwc.view(b, h, w, c).permute(0, 3, 1, 2)
        return rows[:, :, None, None].expand(ctx.shape).contiguous()


def spatial_mean(x: Tensor) -> Tensor:
    """Mean over H and W of (B, C, H, W) as float32 (B, C), cheap in reduced precision.

    A map made by the fused :func:`gated_merge` carries its mean already (computed in the same
    pass, its gradient added in the same backward pass); it is used while the map is unchanged.
    """
    carried = getattr(x, _MEAN_ATTR, None)
    if carried is not None and carried[1] == x._version:
        return carried[0]
    return _SpatialMean.apply(x)


def is_channels_last(t: Tensor) -> bool:
    """A 4-d tensor laid out NHWC (and not also NCHW-contiguous, as 1x1 maps are)."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(
        memory_format=torch.channels_last)


def _flat_rows(t: Tensor, channels_last: bool) -> Tensor:
    """(B, N) rows in memory order (a view when the layout matches)."""
    if channels_last:
        t = t.permute(0, 2, 3, 1)
    return t.reshape(t.shape[0], -1)


def _unflat_rows(rows: Tensor, shape: torch.Size, channels_last: bool) -> Tensor:
    """The inverse of :func:`_flat_rows`: (B, N) rows back to a (B, C, H, W) view."""
    b, c, h, w = shape
    if channels_last:
        return rows.view(b, h, w, c).permute(0, 3, 1, 2)
    return rows.view(b, c, h, w)


# Attribute of a fused merge's output: (its spatial mean, the output's version when computed).
_MEAN_ATTR = "_aignet_spatial_mean"


class _GatedMerge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shortcut: Tensor, residual: Tensor, g: Tensor) -> Tensor:
        # On the (B, N) rows: addcmul with a (B, 1, 1, 1) scale on a channels_last map is 2x
        # slower in float32 than on a 2-d view of the same memory.
        # The rows follow the residual's memory order (reshape copies a shortcut laid out
        # otherwise).
        cl = is_channels_last(residual)
        # g is often a column of the gate's (B, 2) sample: a strided scale halves addcmul's speed.
        rows = torch.addcmul(_flat_rows(shortcut, cl), g.to(residual.dtype).contiguous()[:, None],
                             _flat_rows(residual, cl)).relu_()
        out = _unflat_rows(rows, residual.shape, cl)
        ctx.save_for_backward(out, residual, g)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, residual, g = ctx.saved_tensors
        grad = torch.ops.aten.threshold_backward(grad, out, 0)
        grad_residual = grad * g.to(grad.dtype).view(-1, 1, 1, 1)
        grad_g = None
        if ctx.needs_input_grad[2]:
            cl = is_channels_last(residual)
            rows = _flat_rows(grad.to(residual.dtype), cl)
            grad_g = torch.linalg.vecdot(rows, _flat_rows(residual, cl)).to(g.dtype)
        return grad, grad_residual, grad_g


class _FusedGatedMerge(torch.autograd.Function):
    """:class:`_GatedMerge` as one compiled pass each way (``csrc/gated_merge.cpp``).

    Returns the output and its (B, C) spatial mean; the mean's gradient (from the next block's
    gate) is added to the output's gradient inside the backward pass.
    """

    @staticmethod
    def forward(ctx, shortcut: Tensor, residual: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        cl = is_channels_last(residual)
        ctx.set_materialize_grads(False)
        ctx.layout = (residual.shape, cl)
        rows, mean = kernels.load().merge_forward(
            _flat_rows(shortcut, cl).contiguous(), _flat_rows(residual, cl).contiguous(),
            g.float().contiguous(), residual.shape[1], cl)
        out = _unflat_rows(rows, residual.shape, cl)
        ctx.save_for_backward(out, residual, g)
        return out, mean

    @staticmethod
    @once_differentiable  # the compiled backward records no graph of its own
    def backward(ctx, grad: Tensor | None, grad_mean: Tensor | None
                 ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        out, residual, g = ctx.saved_tensors
        shape, cl = ctx.layout
        if grad is None:
            grad = torch.zeros_like(out)
        grad_in, grad_residual, grad_g = kernels.load().merge_backward(
            _flat_rows(grad.to(out.dtype), cl).contiguous(), _flat_rows(out, cl),
            _flat_rows(residual, cl).contiguous(), g.float().contiguous(),
            None if grad_mean is None else grad_mean.float().contiguous(), shape[1], cl)
        return (_unflat_rows(grad_in, shape, cl), _unflat_rows(grad_residual, shape, cl),
                grad_g.to(g.dtype) if ctx.needs_input_grad[2] else None)


def _fused_merge_applies(residual: Tensor) -> bool:
    """Whether the compiled merge runs for ``residual`` (CPU, float32 or bf16, built)."""
    return (residual.dtype in (torch.float32, torch.bfloat16) and residual.dim() == 4
            and kernels.usable(residual) is not None)


def gated_merge(shortcut: Tensor, residual: Tensor, g: Tensor) -> Tensor:
    """``relu(shortcut + g[:, None, None, None] * residual)`` with a lean backward.

    Args:
        shortcut: (B, C, H, W) shortcut output.
        residual: (B, C, H, W) branch output, same dtype as ``shortcut``.
        g: (B,) gate factors (float32); receives the gradient of the straight-through estimator.
    """
    if shortcut.dtype != residual.dtype:
        dtype = torch.promote_types(shortcut.dtype, residual.dtype)
        shortcut, residual = shortcut.to(dtype), residual.to(dtype)
    if _fused_merge_applies(residual):
        out, mean = _FusedGatedMerge.apply(shortcut, residual, g)
        if not out.is_inference():  # inference tensors keep no version to check the mean by
            setattr(out, _MEAN_ATTR, (mean, out._version))
        return out
    return _GatedMerge.apply(shortcut, residual, g)
