"""Model factories shared by the tests."""

from __future__ import annotations

import torch

import aignet
from aignet.nn.gates import EXECUTE, iter_gates


def warmed_model(name: str, size: int, spread: float = 1.0, open_bias: float | None = None,
                 **kwargs) -> torch.nn.Module:
    """An eval-mode model with realistic BatchNorm statistics and gates that disagree per image.

    Args:
        spread: std of the gates' last-layer weights (larger: decisions vary more per image).
        open_bias: if given, the execute bias of every gate (large +/-: all open/closed).
    """
    model = aignet.create_model(name, **kwargs)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(16, model.in_chans, size, size))
        for gate in iter_gates(model):
            gate.fc2.weight.normal_(std=spread)
            if open_bias is not None:
                gate.fc2.bias.zero_()
                gate.fc2.bias[EXECUTE] = open_bias
    return model.eval()
