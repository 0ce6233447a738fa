"""Sparse execution of a gated residual block: the branch runs only on images whose gate is open.

The original ConvNet-AIG code computes every branch and multiplies it by g ("masked"), so skipping
saves nothing. Here a closed gate really costs only the gate:

* no image open: the block output is the shortcut alone (for an identity shortcut, the input
  itself: inside a post-activation ResNet every block input is a ReLU output, so relu(x) == x);
* every image open: the dense block, scaled by g;
* otherwise: gather the open rows, run the branch on them, and write the merged rows into the
  shortcut output in place (no full-batch clone).

Without autograd, on CPU float32 and bf16 maps, the gather is a compiled row copy and the merge
and write-back one compiled pass (``csrc/sparse_rows.cpp``, :mod:`aignet.nn.kernels`), bitwise
equal to the ops below. Those ops gather and scatter channels_last tensors through their NHWC
view: ``index_select`` on a channels_last NCHW tensor silently returns an NCHW-contiguous copy
and ``index_add_``/``index_copy_`` on it are several times slower, whereas along dim 0 of the
NHWC view both are plain row copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from aignet.nn import kernels
from aignet.nn.gated_ops import is_channels_last

if TYPE_CHECKING:
    from aignet.nn.blocks import ResidualBlock

EXECUTIONS = ("sparse", "masked")


def _row_kernels(t: Tensor):
    """The compiled row kernels where they may run on ``t``: no autograd recording, a float32
    or bf16 map laid out contiguous or channels_last."""
    if (torch.is_grad_enabled() or t.dtype not in (torch.float32, torch.bfloat16)
            or not (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last))):
        return None
    return kernels.usable(t)


def select_rows(t: Tensor, index: Tensor) -> Tensor:
    """``t[index]`` along the batch dimension, keeping a channels_last layout."""
    if (k := _row_kernels(t)) is not None:
        return k.gather_rows(t, index)
    if is_channels_last(t):
        return t.permute(0, 2, 3, 1).index_select(0, index).permute(0, 3, 1, 2)
    return t.index_select(0, index)


def write_rows(out: Tensor, index: Tensor, rows: Tensor) -> Tensor:
    """``out[index] = rows``; in place unless autograd is recording (attacks need gradients)."""
    if is_channels_last(out):
        nhwc = out.permute(0, 2, 3, 1)
        src = rows.permute(0, 2, 3, 1)
        if torch.is_grad_enabled():
            return nhwc.index_copy(0, index, src).permute(0, 3, 1, 2)
        nhwc.index_copy_(0, index, src)
        return out
    if torch.is_grad_enabled():
        return out.index_copy(0, index, rows)
    return out.index_copy_(0, index, rows)


def merge_rows(block: ResidualBlock, out: Tensor, index: Tensor, shortcut: Tensor,
               branch: Tensor, rows: Tensor | None = None) -> Tensor:
    """``out[index] = merge(shortcut[index], branch)``: the open images' block output, in place
    unless autograd is recording. ``rows``, where already gathered, is ``shortcut[index]`` (a
    scratch tensor)."""
    k = _row_kernels(out)
    if k is not None and block.relu_merge and k.mergeable_rows(out, shortcut, branch):
        return k.scatter_merge_(out, index, shortcut, branch, True)
    rows = select_rows(shortcut, index) if rows is None else rows
    return write_rows(out, index, block.merge_into(rows, branch))


def skip_output(block: ResidualBlock, x: Tensor) -> Tensor:
    """The block output for images whose branch is skipped: ``activate(shortcut(x))``."""
    return activated_shortcut(block, block.shortcut(x))


def activated_shortcut(block: ResidualBlock, shortcut: Tensor) -> Tensor:
    """``activate(shortcut)`` for a shortcut output, without a ReLU that would change nothing.

    The input is a post-activation (non-negative) tensor or the block has no output activation,
    so an identity shortcut or one that keeps signs (zero padding) needs no activation.
    """
    if block.downsample is None or getattr(block.downsample, "keeps_nonnegative", False):
        return shortcut
    return block.activate(shortcut)


def sparse_block_forward(block: ResidualBlock, x: Tensor, g: Tensor) -> Tensor:
    """Evaluate ``merge(shortcut(x), g * F(x))`` computing F only where ``g != 0``.

    Args:
        block: the residual block (provides ``residual``, ``shortcut``, ``merge``, ``activate``
            and its ``gate``, whose ``binary`` flag says that no branch needs scaling).
        x: block input (B, C, H, W).
        g: per-image gate factors (B,); zero means skip.

    Returns:
        The block output, equal to the masked computation up to floating-point rounding.
    """
    binary = block.gate.binary
    if x.shape[0] == 1:  # a plain Python branch: a closed gate costs only the gate
        factor = g.item()
        if factor == 0.0:
            return skip_output(block, x)
        branch = block.residual(x)
        return block.merge_into(branch if binary else branch.mul_(factor), block.shortcut(x))
    num_open = int(torch.count_nonzero(g))  # the one host synchronisation of the block
    if num_open == 0:
        return skip_output(block, x)
    if num_open == x.shape[0]:
        branch = block.residual(x)
        if not binary:
            branch = branch * g.to(branch.dtype).view(-1, 1, 1, 1)
        return block.merge_into(branch, block.shortcut(x))
    index = g.nonzero().squeeze(1)
    rows = select_rows(x, index)
    branch = block.residual(rows)
    if not binary:
        branch = branch * g.index_select(0, index).to(branch.dtype).view(-1, 1, 1, 1)
    if block.downsample is None:
        return merge_rows(block, x, index, x, branch, rows)
    shortcut = block.shortcut(x)
    return merge_rows(block, activated_shortcut(block, shortcut), index, shortcut, branch)
