"""Residual blocks, gated or plain, with torchvision's parameter names.

Every block computes ``out = relu(shortcut(x) + g * F(x))`` (post-activation, He et al. 2016)
where ``g`` comes from ``self.gate`` (a :class:`~aignet.nn.gates.Gate`, a stochastic-depth gate, or
``None`` for a block that always runs). ``forward`` returns ``(out, g)`` with ``g`` of shape (B,)
or ``None``; the model's own loop collects the gate values, so stages stay plain
``nn.Sequential`` containers whose keys match torchvision (``layer1.0.conv1`` ...), and a gate
adds only ``layerN.i.gate.*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aignet.nn.executor import EXECUTIONS, sparse_block_forward
from aignet.nn.gated_ops import gated_merge


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Parameter-free downsampling shortcut (He et al. 2016, option A).

    Subsamples spatially by ``stride`` and appends zero channels up to ``out_planes``.
    """

    # Subsampling and zero channels keep a non-negative input non-negative, so the activation
    # after a skipped branch (``relu(shortcut(x))`` of a ReLU output) is the identity.
    keeps_nonnegative = True

    def __init__(self, stride: int, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def projection_shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """1x1 convolution + BatchNorm shortcut (option B); keys ``downsample.0`` / ``downsample.1``."""
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


class ResidualBlock(nn.Module):
    """Shared forward logic; subclasses define :meth:`residual` (the branch F).

    Attributes:
        gate: module mapping the block input to per-image factors (B,), or None.
        downsample: shortcut module, or None for the identity.
        execution: ``"sparse"`` (run F only on images whose gate is open) or ``"masked"`` (run F on
            every image and multiply by g, as the original code). Used in eval only: training
            always computes F for every image so gradients reach every gate.
    """

    expansion = 1
    # (convolution, following BatchNorm) attribute pairs that fusion folds together.
    conv_bn_pairs: tuple[tuple[str, str], ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.gate: nn.Module | None = None
        self.downsample: nn.Module | None = None
        self.execution = "sparse"

    def residual(self, x: Tensor) -> Tensor:
        """The residual branch F(x)."""
        raise NotImplementedError

    def shortcut(self, x: Tensor) -> Tensor:
        """The shortcut path: identity or ``downsample(x)``."""
        return x if self.downsample is None else self.downsample(x)

    def activate(self, t: Tensor) -> Tensor:
        """The activation applied after the addition (ReLU: post-activation blocks)."""
        return F.relu(t)

    def merge(self, shortcut: Tensor, residual: Tensor) -> Tensor:
        """Combine shortcut and (scaled) residual into the block output."""
        return self.activate(shortcut + residual)

    @property
    def relu_merge(self) -> bool:
        """Whether :meth:`merge` is ``relu(shortcut + residual)``, which fused kernels compute."""
        return type(self).activate is ResidualBlock.activate

    def gated_merge(self, shortcut: Tensor, residual: Tensor, g: Tensor) -> Tensor:
        """:meth:`merge` of the residual scaled per image by ``g`` (B,)."""
        if self.relu_merge:  # the fused autograd form
            return gated_merge(shortcut, residual, g)
        return self.merge(shortcut, g.to(residual.dtype).view(-1, 1, 1, 1) * residual)

    def merge_into(self, shortcut: Tensor, residual: Tensor) -> Tensor:
        """:meth:`merge` writing into ``shortcut`` (a scratch tensor) when autograd allows.

        Without autograd the allocation of two full-size temporaries per block is saved; dense
        and sparse execution both use it, so benchmarks compare like with like.
        """
        if torch.is_grad_enabled():
            return self.merge(shortcut, residual)
        return self.activate_(shortcut.add_(residual))

    def activate_(self, t: Tensor) -> Tensor:
        """In-place :meth:`activate`."""
        return t.relu_()

    def dense_forward(self, x: Tensor) -> Tensor:
        """The block with its branch always executed and unscaled."""
        # The fresh branch output is the scratch tensor (addition is commutative).
        return self.merge_into(self.residual(x), self.shortcut(x))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.gate is None:
            return self.dense_forward(x), None
        g = self.gate(x)
        if self.training or self.execution == "masked":
            return self.gated_merge(self.shortcut(x), self.residual(x), g), g
        return sparse_block_forward(self, x, g), g

    def set_execution(self, execution: str) -> None:
        """Choose ``"sparse"`` or ``"masked"`` evaluation."""
        if execution not in EXECUTIONS:
            raise ValueError(f"unknown execution {execution!r}; choose one of {EXECUTIONS}")
        self.execution = execution


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR ResNets)."""

    expansion = 1
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, gate: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.gate = gate

    def residual(self, x: Tensor) -> Tensor:
        # In place: the BatchNorm output is a fresh tensor nobody else reads (as torchvision).
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)), inplace=True)))

    def last_bn(self) -> nn.BatchNorm2d:
        """The branch's final BatchNorm (zeroed by ``zero_init_residual``)."""
        return self.bn2


class Bottleneck(ResidualBlock):
    """1x1 -> 3x3 (stride here, torchvision's "v1.5") -> 1x1 with 4x expansion."""

    expansion = 4
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, gate: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.gate = gate

    def residual(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        return self.bn3(self.conv3(out))

    def last_bn(self) -> nn.BatchNorm2d:
        """The branch's final BatchNorm (zeroed by ``zero_init_residual``)."""
        return self.bn3


class PreActBasicBlock(ResidualBlock):
    """Pre-activation block (He et al., "Identity Mappings", 2016): BN-ReLU-conv twice.

    No activation after the addition; a projection/zero-pad shortcut reads the pre-activated
    input. Used ungated, as a baseline.
    """

    expansion = 1
    conv_bn_pairs = (("conv1", "bn2"),)  # bn1 precedes any convolution and cannot be folded

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, gate: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.gate = gate
        if gate is not None:
            raise ValueError("pre-activation blocks are a dense baseline and take no gate")

    def residual(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x)))), inplace=True))

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.downsample is None else self.downsample(F.relu(self.bn1(x)))

    def activate(self, t: Tensor) -> Tensor:
        return t

    def activate_(self, t: Tensor) -> Tensor:
        return t

    def last_bn(self) -> None:
        return None


def zero_init_last_bn(module: nn.Module) -> None:
    """Zero the last BatchNorm weight of every residual branch (Goyal et al. 2017)."""
    for block in module.modules():
        if isinstance(block, ResidualBlock) and block.last_bn() is not None:
            torch.nn.init.zeros_(block.last_bn().weight)


def set_execution(model: nn.Module, execution: str) -> nn.Module:
    """Set ``"sparse"`` or ``"masked"`` evaluation on every residual block; returns ``model``."""
    for block in model.modules():
        if isinstance(block, ResidualBlock):
            block.set_execution(execution)
    return model


def remove_gates(model: nn.Module) -> nn.Module:
    """Drop every block's gate, in place: every block runs and no gate is evaluated, which makes
    a gated network the plain ResNet with the same weights. Returns ``model``."""
    for block in model.modules():
        if isinstance(block, ResidualBlock):
            block.gate = None
    return model
