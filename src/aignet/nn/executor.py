"""Sparse execution of a gated residual block: the branch runs only on images whose gate is open.

The original ConvNet-AIG code computes every branch and multiplies it by g ("masked"), so skipping
saves nothing. Here a closed gate really costs only the gate:

* no image open: the block output is the shortcut alone (for an identity shortcut, the input
  itself: inside a post-activation ResNet every block input is a ReLU output, so relu(x) == x);
* every image open: the dense block, scaled by g;
* otherwise: gather the open rows, run the branch on them, and write the merged rows into the
  shortcut output in place (no full-batch clone).

channels_last tensors are gathered and scattered through their NHWC view: ``index_select`` on a
channels_last NCHW tensor silently returns an NCHW-contiguous copy and ``index_add_``/
``index_copy_`` on it are several times slower, whereas along dim 0 of the NHWC view both are
plain row copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from aignet.nn.gated_ops import is_channels_last

if TYPE_CHECKING:
    from aignet.nn.blocks import ResidualBlock

EXECUTIONS = ("sparse", "masked")


def select_rows(t: Tensor, index: Tensor) -> Tensor:
    """``t[index]`` along the batch dimension, keeping a channels_last layout."""
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
        return write_rows(x, index, block.merge_into(rows, branch))
    shortcut = block.shortcut(x)
    rows = block.merge_into(select_rows(shortcut, index), branch)
    return write_rows(activated_shortcut(block, shortcut), index, rows)
