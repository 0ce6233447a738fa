"""Re-estimate BatchNorm statistics under the inference-time execution graph.

During training every branch sees every image and the gates are Gumbel samples, so the running
statistics describe a network that inference never runs: at test time the gates are
deterministic and, with sparse execution, a branch sees only the images whose gate is open.
:func:`recalibrate_bn` recomputes the statistics of every ``BatchNorm2d`` (a cumulative average
over the given batches) with the gates in their inference mode, either on the images that run
each block (``executed_only=True``) or on all images (masked execution).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from aignet.nn.blocks import set_execution


def recalibrate_bn(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                   executed_only: bool = True) -> int:
    """Recompute the BatchNorm2d running statistics of ``model`` in place.

    Args:
        model: a (gated) ResNet; its gates keep their inference mode and threshold.
        batches: (images, labels) batches, typically training images without augmentation.
        executed_only: statistics of each branch from the images that run it (sparse), or
            from all images (masked).

    Returns:
        The number of images seen. The model is left in eval mode with sparse execution.
    """
    model.eval()
    set_execution(model, "sparse" if executed_only else "masked")
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over every batch
        bn.train()
    seen = 0
    with torch.no_grad():
        for images, _ in batches:
            model(images)
            seen += len(images)
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
        bn.eval()
    set_execution(model, "sparse")
    if seen == 0:
        raise ValueError("BatchNorm recalibration needs at least one batch of images")
    return seen
