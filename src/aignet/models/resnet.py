"""One ResNet class for every aignet model: CIFAR and ImageNet stems, gated or dense blocks.

Forward contract (the same for every model, gated or not)::

    out = model(x)          # x: (B, in_chans, H, W)
    out.logits              # (B, num_classes)
    out.gates               # (B, L) float32, one column per residual block

``gates`` in training mode holds the straight-through gate samples (differentiable) that the
target-rate loss needs; in eval mode it is the per-image record of the factor each block's
branch was multiplied by (0 = skipped). Ungated blocks report 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aignet.nn.blocks import (
    PreActBasicBlock,
    ResidualBlock,
    ZeroPadShortcut,
    conv1x1,
    conv3x3,
    projection_shortcut,
    zero_init_last_bn,
)
from aignet.nn.gates import DEFAULT_HIDDEN, DEFAULT_INIT_RATE, Gate, GateBase
from aignet.nn.stochastic_depth import SurvivalGate
from aignet.nn.target_rates import TargetSpec, resolve_target_rates

SHORTCUTS = ("A", "B")
STEMS = ("cifar", "imagenet")


class ModelOutput(NamedTuple):
    """What every aignet model returns."""

    logits: Tensor
    gates: Tensor


class ResNet(nn.Module):
    """A (possibly gated) ResNet.

    Args:
        block: residual block class (``BasicBlock``, ``Bottleneck``, ``PreActBasicBlock``).
        layers: number of blocks per stage.
        widths: base width (``planes``) per stage.
        target_rates: one rate per residual block; blocks with rate < 1 get a :class:`Gate`.
        stem: ``"cifar"`` (3x3 conv) or ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool).
        stem_width: output channels of the stem.
        in_chans: input image channels (1 for grayscale).
        num_classes: classifier outputs.
        shortcut: ``"A"`` (zero-padding, parameter-free) or ``"B"`` (1x1 projection) for
            downsampling blocks.
        gate_hidden: hidden width d of every gate.
        gate_init_rate: initial opening probability of every gate.
        survival: stochastic-depth survival per block (dense baselines only), or None.
        zero_init_residual: zero the last BatchNorm of every branch.
    """

    def __init__(self, block: type[ResidualBlock], layers: Sequence[int], widths: Sequence[int],
                 *, target_rates: Sequence[float], stem: str = "imagenet", stem_width: int = 64,
                 in_chans: int = 3, num_classes: int = 1000, shortcut: str = "B",
                 gate_hidden: int = DEFAULT_HIDDEN, gate_init_rate: float = DEFAULT_INIT_RATE,
                 survival: Sequence[float] | None = None,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        _check_options(stem, shortcut, in_chans, num_classes, len(layers), len(widths))
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.target_rates = tuple(float(t) for t in target_rates)
        self.preact = issubclass(block, PreActBasicBlock)
        self._build_stem(stem, in_chans, stem_width)
        self.inplanes = stem_width
        self.stage_names: list[str] = []
        rates = list(self.target_rates)
        survivals = list(survival) if survival is not None else [None] * len(rates)
        for i, (num, width) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if i == 0 else 2
            start = sum(layers[:i])
            stage = self._make_layer(block, width, num, stride, shortcut, rates[start:start + num],
                                     survivals[start:start + num], gate_hidden, gate_init_rate)
            self.stage_names.append(f"layer{i + 1}")
            self.add_module(f"layer{i + 1}", stage)
        final = self.inplanes
        self.final_bn = nn.BatchNorm2d(final) if self.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(final, num_classes)
        self._init_weights(zero_init_residual)
        if len(self.target_rates) != self.num_blocks:
            raise ValueError(f"got {len(self.target_rates)} target rates for {self.num_blocks} "
                             "residual blocks")

    # -- construction -------------------------------------------------------------------------
    def _build_stem(self, stem: str, in_chans: int, width: int) -> None:
        if stem == "cifar":
            self.conv1 = conv3x3(in_chans, width)
            self.maxpool = None
        else:
            self.conv1 = nn.Conv2d(in_chans, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # Pre-activation networks normalise at the end of the network instead.
        self.bn1 = None if self.preact else nn.BatchNorm2d(width)

    def _make_layer(self, block: type[ResidualBlock], planes: int, num: int, stride: int,
                    shortcut: str, rates: Sequence[float], survivals: Sequence[float | None],
                    gate_hidden: int, gate_init_rate: float) -> nn.Sequential:
        blocks = []
        for j in range(num):
            s = stride if j == 0 else 1
            downsample = self._shortcut(planes * block.expansion, s, shortcut)
            gate = _make_gate(self.inplanes, rates[j], survivals[j], gate_hidden, gate_init_rate)
            blocks.append(block(self.inplanes, planes, s, downsample, gate))
            self.inplanes = planes * block.expansion
        return nn.Sequential(*blocks)

    def _shortcut(self, out_planes: int, stride: int, kind: str) -> nn.Module | None:
        if stride == 1 and self.inplanes == out_planes:
            return None
        if kind == "A" and out_planes >= self.inplanes:
            return ZeroPadShortcut(stride, self.inplanes, out_planes)
        if self.preact:
            return conv1x1(self.inplanes, out_planes, stride)
        return projection_shortcut(self.inplanes, out_planes, stride)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, GateBase):
                continue  # gates initialise themselves (opening bias); see Gate.reset_parameters
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            zero_init_last_bn(self)

    # -- structure ----------------------------------------------------------------------------
    def blocks(self) -> Iterator[ResidualBlock]:
        """The residual blocks in execution order (index l = column l of ``gates``)."""
        for name in self.stage_names:
            yield from getattr(self, name)

    @property
    def num_blocks(self) -> int:
        """Number of residual blocks L."""
        return sum(len(getattr(self, name)) for name in self.stage_names)

    @property
    def gated(self) -> tuple[bool, ...]:
        """Per block: does it carry a learned :class:`Gate`?"""
        return tuple(isinstance(b.gate, GateBase) for b in self.blocks())

    # -- forward ------------------------------------------------------------------------------
    def forward_stem(self, x: Tensor) -> Tensor:
        """Input image -> input of the first residual block."""
        x = self.conv1(x)
        if self.bn1 is not None:
            # In place, as torchvision: the BatchNorm output (or, fused, the convolution's) is
            # a fresh tensor that nothing else reads.
            x = F.relu(self.bn1(x), inplace=True)
        if self.maxpool is not None:
            x = self.maxpool(x)
        return x

    def forward_head(self, x: Tensor) -> Tensor:
        """Output of the last block -> logits."""
        if self.final_bn is not None:
            x = F.relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    # Set by aignet.fuse: the whole inference pass as one compiled call, or None where it
    # cannot run (see aignet.engine.compiled_forward); the Python path below is the reference.
    fast_forward: Callable[[Tensor], ModelOutput | None] | None = None

    def forward(self, x: Tensor) -> ModelOutput:
        self.check_input(x)
        if self.fast_forward is not None and (out := self.fast_forward(x)) is not None:
            return out
        x = self.forward_stem(x)
        gates = []
        for block in self.blocks():
            x, g = block(x)
            gates.append(g)
        logits = self.forward_head(x)
        ones = torch.ones(x.shape[0], device=x.device)
        return ModelOutput(logits, torch.stack([ones if g is None else g for g in gates], 1))

    def check_input(self, x: Tensor) -> None:
        """Raise a one-line ValueError for an input the model cannot take."""
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D image batch (B, {self.in_chans}, H, W), got shape "
                             f"{tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"model expects {self.in_chans}-channel images, got {x.shape[1]} "
                             f"channels (shape {tuple(x.shape)}); build it with "
                             f"in_chans={x.shape[1]} to match the data")


def build_resnet(name: str, block: type[ResidualBlock], layers: Sequence[int],
                 widths: Sequence[int], *, gated: bool, default_targets: TargetSpec = None,
                 input_size: int, num_classes: int, target_rates: TargetSpec = None,
                 **kwargs) -> ResNet:
    """Resolve target rates and build a :class:`ResNet` tagged with its registry name.

    Args:
        name: registry name (recorded as ``model.name``).
        block, layers, widths: architecture, see :class:`ResNet`.
        gated: whether the family carries gates (dense baselines refuse ``target_rates``).
        default_targets: target specification used when ``target_rates`` is None.
        input_size: default square input resolution (``model.default_input_size``).
        num_classes: classifier outputs.
        target_rates: number, per-block list or ``"preset:t"`` string.
        **kwargs: passed to :class:`ResNet`.
    """
    num_blocks = sum(layers)
    stage_starts = [sum(layers[:i]) for i in range(len(layers))]
    if not gated and target_rates is not None:
        raise ValueError(f"{name} is a dense model and takes no target_rates; the gated "
                         "models are named aig_* (`aignet models`)")
    rates = resolve_target_rates(target_rates, num_blocks, stage_starts,
                                 default=default_targets if gated else 1.0)
    model = ResNet(block, layers, widths, target_rates=rates, num_classes=num_classes, **kwargs)
    model.name = name
    model.default_input_size = input_size
    return model


def _make_gate(in_channels: int, rate: float, survival: float | None, hidden: int,
               init_rate: float) -> nn.Module | None:
    if survival is not None:
        return SurvivalGate(survival)
    if rate < 1.0:
        return Gate(in_channels, hidden=hidden, init_rate=init_rate)
    return None


def _check_options(stem: str, shortcut: str, in_chans: int, num_classes: int, num_layers: int,
                   num_widths: int) -> None:
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose one of {STEMS}")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {shortcut!r}; choose 'A' (zero-padding) or "
                         "'B' (projection)")
    if in_chans < 1 or num_classes < 1:
        raise ValueError(f"in_chans and num_classes must be >= 1, got {in_chans}, {num_classes}")
    if num_layers != num_widths:
        raise ValueError(f"{num_layers} stages but {num_widths} widths")
