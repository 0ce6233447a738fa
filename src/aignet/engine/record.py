"""Per-image execution records: which blocks ran, what each image cost, and summaries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from aignet.engine.flops import MacProfile


@dataclass(frozen=True)
class ExecutionRecord:
    """What a model executed for N images.

    Attributes:
        gates: (N, L) float32, the factor each block's branch was multiplied by (0 = skipped).
        macs: (N,) float64, multiply-adds per image (see :mod:`aignet.engine.flops`).
        macs_dense: MACs of the dense network for the same input size.
        gated: per block, whether it has a learned gate.
    """

    gates: Tensor
    macs: Tensor
    macs_dense: int
    gated: tuple[bool, ...]

    @classmethod
    def from_gates(cls, gates: Tensor, profile: MacProfile,
                   gates_evaluated: bool = True) -> ExecutionRecord:
        """Build a record from a model's eval-mode ``gates`` output and its MAC profile."""
        gates = gates.detach().float().cpu()
        return cls(gates, profile.per_image(gates, gates_evaluated), profile.dense,
                   tuple(b.gated for b in profile.blocks))

    @classmethod
    def cat(cls, records: Sequence[ExecutionRecord]) -> ExecutionRecord:
        """Concatenate records of successive batches."""
        if not records:
            raise ValueError("no execution records to concatenate")
        first = records[0]
        return cls(torch.cat([r.gates for r in records]), torch.cat([r.macs for r in records]),
                   first.macs_dense, first.gated)

    def __len__(self) -> int:
        return self.gates.shape[0]

    @property
    def executed(self) -> Tensor:
        """(N, L) bool: block l's branch ran for image n."""
        return self.gates != 0

    @property
    def executed_blocks(self) -> Tensor:
        """(N,) number of residual blocks executed per image."""
        return self.executed.sum(1)

    @property
    def layer_rates(self) -> Tensor:
        """(L,) fraction of images for which each block ran."""
        return self.executed.float().mean(0)

    @property
    def gated_rate(self) -> float:
        """Mean execution rate over the gated blocks only (1.0 when none is gated)."""
        mask = torch.tensor(self.gated)
        return float(self.layer_rates[mask].mean()) if mask.any() else 1.0

    def summary(self) -> dict:
        """Plain-data summary: MAC mean/std and ratio, executed blocks mean/std, layer rates."""
        blocks = self.executed_blocks.double()
        return {
            "images": len(self),
            "macs_mean": float(self.macs.mean()),
            "macs_std": float(self.macs.std(unbiased=False)),
            "macs_dense": self.macs_dense,
            "mac_ratio": float(self.macs.mean()) / self.macs_dense,
            "executed_blocks_mean": float(blocks.mean()),
            "executed_blocks_std": float(blocks.std(unbiased=False)),
            "gated_rate": self.gated_rate,
            "layer_rates": [round(float(r), 6) for r in self.layer_rates],
        }
