"""Autograd functions for the two places a gate touches a block's activations.

Written by hand because autograd's generic formulas cost full-size passes that a gated block
does not need (measured in ``benchmarks/train_speed.py``):

* :func:`spatial_mean` (the gate's pooling): ``x.mean((2, 3), dtype=float32)`` copies a bf16
  input to float32 in the forward pass, and its backward materialises ``expand(grad) / HW`` in
  float32 before casting it back. Here the sum is taken in the input's dtype (the reduction
  accumulates in float32), over the NHWC rows when channels_last, and the backward returns the
  gradient in the input's dtype: a broadcast view in float32, a materialised map in x's layout
  in reduced precision (where autograd's addition of a broadcast view is slow).
* :func:`gated_merge`, ``relu(shortcut + g * residual)``: one ``addcmul`` and an in-place ReLU
  forward, and a backward that saves only the output (for the ReLU mask) and the residual,
  with the gate's gradient as one row-wise dot product.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
    """Mean over H and W of (B, C, H, W) as float32 (B, C), cheap in reduced precision."""
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
    return _GatedMerge.apply(shortcut, residual, g)
