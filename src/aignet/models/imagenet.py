"""ImageNet ResNets with torchvision-compatible parameter names.

A torchvision ``resnetN`` state_dict loads into ``aig_resnetN``: the ResNet keys are identical
and the gates add only ``layerX.Y.gate.{fc1.weight, bn.*, fc2.weight, fc2.bias, running_rate}``
(see :func:`aignet.models.resnet_weights.load_resnet_weights`).
"""

from __future__ import annotations

from aignet.models.registry import register_model
from aignet.models.resnet import ResNet, build_resnet
from aignet.nn.blocks import BasicBlock, Bottleneck
from aignet.nn.target_rates import TargetSpec

IMAGENET_WIDTHS = (64, 128, 256, 512)
IMAGENET_INPUT_SIZE = 224
IMAGENET_CLASSES = 1000
# Defaults: the original work's published schedules (README of ConvNet-AIG) where they exist,
# otherwise the first block of each stage always runs and the rest are gated at 0.6.
DEFAULT_TARGETS: dict[int, TargetSpec] = {
    18: "stage:0.6", 34: "stage:0.6", 50: "aig50:0.6", 101: "aig101:0.5", 152: "stage:0.6",
}
LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
          152: (3, 8, 36, 3)}


def _imagenet(depth: int, gated: bool, num_classes: int = IMAGENET_CLASSES,
              **kwargs) -> ResNet:
    block = BasicBlock if depth < 50 else Bottleneck
    name = f"{'aig_' if gated else ''}resnet{depth}"
    return build_resnet(name, block, LAYERS[depth], IMAGENET_WIDTHS, gated=gated,
                        default_targets=DEFAULT_TARGETS[depth], input_size=IMAGENET_INPUT_SIZE,
                        num_classes=num_classes, stem="imagenet", stem_width=64, **kwargs)


@register_model
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (torchvision layout)."""
    return _imagenet(18, gated=False, **kwargs)


@register_model
def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (torchvision layout)."""
    return _imagenet(34, gated=False, **kwargs)


@register_model
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (torchvision layout, 25,557,032 parameters, 4.09G MACs at 224x224)."""
    return _imagenet(50, gated=False, **kwargs)


@register_model
def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (torchvision layout)."""
    return _imagenet(101, gated=False, **kwargs)


@register_model
def resnet152(**kwargs) -> ResNet:
    """ResNet-152 (torchvision layout)."""
    return _imagenet(152, gated=False, **kwargs)


@register_model
def aig_resnet18(**kwargs) -> ResNet:
    """ConvNet-AIG ResNet-18."""
    return _imagenet(18, gated=True, **kwargs)


@register_model
def aig_resnet34(**kwargs) -> ResNet:
    """ConvNet-AIG ResNet-34."""
    return _imagenet(34, gated=True, **kwargs)


@register_model
def aig_resnet50(**kwargs) -> ResNet:
    """ConvNet-AIG 50 with the published per-layer targets (``"aig50:0.6"`` by default)."""
    return _imagenet(50, gated=True, **kwargs)


@register_model
def aig_resnet101(**kwargs) -> ResNet:
    """ConvNet-AIG 101 with the published per-layer targets (``"aig101:0.5"`` by default)."""
    return _imagenet(101, gated=True, **kwargs)


@register_model
def aig_resnet152(**kwargs) -> ResNet:
    """ConvNet-AIG ResNet-152."""
    return _imagenet(152, gated=True, **kwargs)
