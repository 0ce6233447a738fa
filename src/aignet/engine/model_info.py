"""A model's structure and cost as plain data (``aignet info``)."""

from __future__ import annotations

from torch import nn

from aignet.engine.flops import profile_macs


def model_info(model: nn.Module, input_size: int | None = None) -> dict:
    """Parameters, dense/fixed MACs, gate overhead and per-block MACs of ``model``."""
    profile = profile_macs(model, input_size)
    return {
        "name": getattr(model, "name", type(model).__name__),
        "input_shape": list(profile.input_shape),
        "num_classes": model.num_classes,
        "params": sum(p.numel() for p in model.parameters()),
        "macs_dense": profile.dense,
        "macs_fixed": profile.fixed,
        "gate_macs": profile.gate_total,
        "gate_macs_percent": profile.gate_percent,
        "num_blocks": len(profile.blocks),
        "gated_blocks": sum(b.gated for b in profile.blocks),
        "target_rates": list(model.target_rates),
        "blocks": [{
            "index": b.index, "name": b.name, "stage": b.stage, "input_shape": list(b.input_shape),
            "residual_macs": b.residual, "shortcut_macs": b.shortcut, "gate_macs": b.gate,
            "gated": b.gated, "target_rate": b.target_rate,
        } for b in profile.blocks],
    }


def format_info(info: dict) -> str:
    """A readable table of :func:`model_info`'s result."""
    lines = [
        f"{info['name']}: {info['params']:,} parameters, input {tuple(info['input_shape'])}",
        f"dense MACs {info['macs_dense'] / 1e6:,.2f}M, fixed (all gates closed) "
        f"{info['macs_fixed'] / 1e6:,.2f}M, gates {info['gate_macs_percent']:.4f}%",
        f"{info['gated_blocks']} of {info['num_blocks']} residual blocks gated",
        f"{'block':<12}{'stage':>6}{'input':>18}{'branch MACs':>14}{'gated':>7}{'target':>8}",
    ]
    for b in info["blocks"]:
        lines.append(f"{b['name']:<12}{b['stage']:>6}{str(tuple(b['input_shape'])):>18}"
                     f"{b['residual_macs'] / 1e6:>13.2f}M{'yes' if b['gated'] else 'no':>7}"
                     f"{b['target_rate']:>8.2f}")
    return "\n".join(lines)
