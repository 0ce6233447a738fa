"""torchvision ResNet weights in aignet models: the gate keys and a strict loader."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

# Every gate parameter and buffer lives under ``layerN.i.gate.``; the rest is torchvision's.
GATE_KEY = ".gate."


def load_resnet_weights(model: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Load a torchvision-style ResNet state_dict into an aignet model (gated or not).

    Every key of ``state_dict`` must exist in the model with the same shape; the model keys it
    lacks must all be gate keys (``layerX.Y.gate.*``), which keep their initialisation.

    Returns:
        The gate keys left at initialisation.
    """
    own = model.state_dict()
    unexpected = [k for k in state_dict if k not in own]
    if unexpected:
        name = getattr(model, "name", "the model")
        raise ValueError(f"{len(unexpected)} keys do not belong to {name} "
                         f"(first: {unexpected[0]}); is it the same ResNet depth?")
    wrong = [k for k, v in state_dict.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        key = wrong[0]
        raise ValueError(f"shape mismatch for {key}: checkpoint {tuple(state_dict[key].shape)} "
                         f"vs model {tuple(own[key].shape)} (num_classes or in_chans differ?)")
    missing = [k for k in own if k not in state_dict]
    not_gate = [k for k in missing if GATE_KEY not in k]
    if not_gate:
        raise ValueError(f"checkpoint lacks {len(not_gate)} non-gate keys (first: {not_gate[0]})")
    model.load_state_dict(state_dict, strict=False)
    return missing
