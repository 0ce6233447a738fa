"""CIFAR ResNets (He et al. 2016): 3x3 stem, three stages of 16/32/64 channels, depth 6n+2.

Downsampling shortcuts default to parameter-free zero-padding (option A, as He et al.);
``shortcut="B"`` selects 1x1 projections (the original ConvNet-AIG code).
"""

from __future__ import annotations

from aignet.models.registry import register_model
from aignet.models.resnet import ResNet, build_resnet
from aignet.nn.blocks import BasicBlock, Bottleneck, PreActBasicBlock
from aignet.nn.stochastic_depth import linear_survival

CIFAR_WIDTHS = (16, 32, 64)
CIFAR_INPUT_SIZE = 32
CIFAR_CLASSES = 10
# ConvNet-AIG's CIFAR target rate (Veit & Belongie 2018, Table 1).
CIFAR_DEFAULT_TARGET = 0.7
STOCHASTIC_DEPTH_LAST_SURVIVAL = 0.5
# The papers' wide ConvNet-AIG for CIFAR: bottleneck blocks, four stages.
WIDE_LAYERS = (3, 4, 20, 2)
WIDE_WIDTHS = (64, 128, 256, 512)


def _cifar(name: str, depth: int, gated: bool, block=BasicBlock, num_classes: int = CIFAR_CLASSES,
           shortcut: str = "A", **kwargs) -> ResNet:
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return build_resnet(name, block, [n] * 3, CIFAR_WIDTHS, gated=gated,
                        default_targets=CIFAR_DEFAULT_TARGET, input_size=CIFAR_INPUT_SIZE,
                        num_classes=num_classes, stem="cifar", stem_width=CIFAR_WIDTHS[0],
                        shortcut=shortcut, **kwargs)


@register_model
def resnet20_cifar(**kwargs) -> ResNet:
    """ResNet-20 for CIFAR (0.27M parameters, 41M MACs)."""
    return _cifar("resnet20_cifar", 20, gated=False, **kwargs)


@register_model
def resnet32_cifar(**kwargs) -> ResNet:
    """ResNet-32 for CIFAR."""
    return _cifar("resnet32_cifar", 32, gated=False, **kwargs)


@register_model
def resnet44_cifar(**kwargs) -> ResNet:
    """ResNet-44 for CIFAR."""
    return _cifar("resnet44_cifar", 44, gated=False, **kwargs)


@register_model
def resnet56_cifar(**kwargs) -> ResNet:
    """ResNet-56 for CIFAR."""
    return _cifar("resnet56_cifar", 56, gated=False, **kwargs)


@register_model
def resnet110_cifar(**kwargs) -> ResNet:
    """ResNet-110 for CIFAR (1.7M parameters, 253M MACs)."""
    return _cifar("resnet110_cifar", 110, gated=False, **kwargs)


@register_model
def aig_resnet20_cifar(**kwargs) -> ResNet:
    """ConvNet-AIG ResNet-20 for CIFAR (every block gated, target 0.7 by default)."""
    return _cifar("aig_resnet20_cifar", 20, gated=True, **kwargs)


@register_model
def aig_resnet32_cifar(**kwargs) -> ResNet:
    """ConvNet-AIG ResNet-32 for CIFAR."""
    return _cifar("aig_resnet32_cifar", 32, gated=True, **kwargs)


@register_model
def aig_resnet44_cifar(**kwargs) -> ResNet:
    """ConvNet-AIG ResNet-44 for CIFAR."""
    return _cifar("aig_resnet44_cifar", 44, gated=True, **kwargs)


@register_model
def aig_resnet56_cifar(**kwargs) -> ResNet:
    """ConvNet-AIG ResNet-56 for CIFAR."""
    return _cifar("aig_resnet56_cifar", 56, gated=True, **kwargs)


@register_model
def aig_resnet110_cifar(**kwargs) -> ResNet:
    """ConvNet-AIG ResNet-110 for CIFAR (the papers' main CIFAR-10 model)."""
    return _cifar("aig_resnet110_cifar", 110, gated=True, **kwargs)


@register_model
def preact_resnet110_cifar(**kwargs) -> ResNet:
    """Pre-activation ResNet-110 (He et al., "Identity Mappings"), a dense baseline."""
    return _cifar("preact_resnet110_cifar", 110, gated=False, block=PreActBasicBlock, **kwargs)


@register_model
def stochdepth_resnet110_cifar(survival_last: float = STOCHASTIC_DEPTH_LAST_SURVIVAL,
                               **kwargs) -> ResNet:
    """ResNet-110 with stochastic depth (Huang et al. 2016): survival decays linearly to 0.5.

    Branches are dropped per image while training and scaled by their survival at test time.
    """
    survival = linear_survival(54, survival_last)
    return _cifar("stochdepth_resnet110_cifar", 110, gated=False, survival=survival, **kwargs)


def _wide(name: str, gated: bool, num_classes: int = CIFAR_CLASSES, **kwargs) -> ResNet:
    return build_resnet(name, Bottleneck, WIDE_LAYERS, WIDE_WIDTHS, gated=gated,
                        default_targets=CIFAR_DEFAULT_TARGET, input_size=CIFAR_INPUT_SIZE,
                        num_classes=num_classes, stem="cifar", stem_width=WIDE_WIDTHS[0],
                        **kwargs)


@register_model
def wide_resnet_cifar(**kwargs) -> ResNet:
    """The dense counterpart of the papers' wide CIFAR network (bottlenecks [3, 4, 20, 2])."""
    return _wide("wide_resnet_cifar", gated=False, **kwargs)


@register_model
def aig_wide_resnet_cifar(**kwargs) -> ResNet:
    """The papers' wide ConvNet-AIG for CIFAR: bottlenecks [3, 4, 20, 2] at 64/128/256/512."""
    return _wide("aig_wide_resnet_cifar", gated=True, **kwargs)
