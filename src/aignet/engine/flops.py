"""Exact multiply-add (MAC) accounting with ``torch.utils.flop_counter.FlopCounterMode``.

A model is profiled once per input size: the stem, the head, and per residual block its branch,
its shortcut and its gate are counted separately on a batch of one image. An image then costs

    macs(image) = stem + head + sum_l shortcut_l + sum_{gated l} gate_l + sum_l e_l * residual_l

where ``e_l`` in {0, 1} says whether block l's branch ran (ungated blocks always run). Gates are
not evaluated in the ``expected`` and ``all`` inference modes, so there the gate term is dropped.
FlopCounterMode counts convolutions and matrix products (2 FLOPs per MAC); BatchNorm, ReLU,
pooling and additions are not multiply-adds and are not counted, as in the literature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from aignet.nn.gates import GateBase


def count_macs(fn: Callable[..., object], *args: object) -> int:
    """Multiply-adds performed by ``fn(*args)`` (FLOPs / 2 as counted by FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class BlockMacs:
    """MACs of one residual block for one image."""

    index: int
    name: str
    stage: int
    input_shape: tuple[int, int, int]
    residual: int
    shortcut: int
    gate: int
    gated: bool
    target_rate: float


@dataclass(frozen=True)
class MacProfile:
    """Per-part MACs of a model for one input size; see the module docstring for the formula."""

    input_shape: tuple[int, int, int]
    stem: int
    head: int
    blocks: tuple[BlockMacs, ...]

    @property
    def gate_total(self) -> int:
        """MACs of all gates."""
        return sum(b.gate for b in self.blocks)

    @property
    def dense(self) -> int:
        """MACs of the plain network: every branch, no gates."""
        return self.stem + self.head + sum(b.residual + b.shortcut for b in self.blocks)

    @property
    def fixed(self) -> int:
        """MACs every image pays with every gated branch skipped (gates included)."""
        always = sum(b.residual for b in self.blocks if not b.gated)
        return self.stem + self.head + sum(b.shortcut for b in self.blocks) + self.gate_total \
            + always

    @property
    def gate_percent(self) -> float:
        """Gate overhead in percent of the dense MACs."""
        return 100.0 * self.gate_total / self.dense

    def residual_tensor(self, device: torch.device | str = "cpu") -> Tensor:
        """Branch MACs per block as a float64 tensor (L,)."""
        return torch.tensor([b.residual for b in self.blocks], dtype=torch.float64, device=device)

    def per_image(self, executed: Tensor, gates_evaluated: bool = True) -> Tensor:
        """Per-image MACs from an execution record.

        Args:
            executed: (B, L) with nonzero where block l's branch ran for image b.
            gates_evaluated: False for the ``expected``/``all`` modes, which skip the gates.

        Returns:
            float64 tensor (B,).
        """
        if executed.dim() != 2 or executed.shape[1] != len(self.blocks):
            raise ValueError(f"execution record must have shape (B, {len(self.blocks)}), got "
                             f"{tuple(executed.shape)}")
        ran = (executed != 0).to(torch.float64)
        overhead = self.stem + self.head + sum(b.shortcut for b in self.blocks)
        if gates_evaluated:
            overhead += self.gate_total
        return overhead + ran @ self.residual_tensor(executed.device)


def profile_macs(model: nn.Module, input_size: int | tuple[int, int] | None = None) -> MacProfile:
    """Count the MACs of every part of a :class:`~aignet.models.ResNet` for one image.

    Args:
        model: an aignet ResNet (gated or not); its mode and weights are left unchanged.
        input_size: square size or (H, W); defaults to ``model.default_input_size``.
    """
    size = input_size if input_size is not None else model.default_input_size
    h, w = (size, size) if isinstance(size, int) else size
    param = next(model.parameters())
    x = torch.zeros(1, model.in_chans, h, w, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _profile(model, x)
    finally:
        model.train(was_training)


def _profile(model: nn.Module, x: Tensor) -> MacProfile:
    input_shape = tuple(x.shape[1:])
    stem = count_macs(model.forward_stem, x)
    x = model.forward_stem(x)
    stage_of = {id(b): s for s, name in enumerate(model.stage_names)
                for b in getattr(model, name)}
    names = {id(m): n for n, m in model.named_modules()}
    blocks = []
    for i, (block, rate) in enumerate(zip(model.blocks(), model.target_rates, strict=True)):
        gated = isinstance(block.gate, GateBase)
        blocks.append(BlockMacs(
            index=i, name=names[id(block)], stage=stage_of[id(block)] + 1,
            input_shape=tuple(x.shape[1:]), residual=count_macs(block.residual, x),
            shortcut=count_macs(block.shortcut, x),
            gate=count_macs(block.gate.margin, x) if gated else 0, gated=gated,
            target_rate=rate))
        x = block.dense_forward(x)
    head = count_macs(model.forward_head, x)
    return MacProfile(input_shape, stem, head, tuple(blocks))
