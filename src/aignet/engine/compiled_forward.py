"""The whole inference forward pass of a fused ResNet as one compiled call.

At batch 1 a gated block's convolutions take tens of microseconds, and the Python around them
(module calls, the gate's dispatch, the sparse executor's branches) about as much again, so
skipping a block saved only part of its time. :func:`aignet.fuse` attaches a
:class:`CompiledForward` to every fused model; ``model(x)`` then runs stem, blocks and head in
``csrc/resnet_forward.cpp``, which issues the same ATen operations as the Python path (logits
and decisions are bitwise the same; ``tests/engine/test_compiled_forward.py``).

It runs only where it gives exactly what the Python path would: a float32 CPU batch without
autograd (``torch.inference_mode`` or ``torch.no_grad``), sparse execution, deterministic (or
``all``) gates, plain post-activation blocks of fused convolutions, no hooks, and the compiled
kernels available (``AIGNET_KERNELS=off`` turns it off with them). Anything else, including
bf16 and int8 models, runs the Python path. The plan holds the model's tensors by reference:
in-place changes (``load_state_dict``) are seen; replacing a module, parameter or buffer, or
converting the model, rebuilds it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from aignet.engine.fused_gate import FusedGate
from aignet.models.resnet import ModelOutput, ResNet
from aignet.nn import kernels
from aignet.nn.blocks import BasicBlock, Bottleneck, ResidualBlock, ZeroPadShortcut
from aignet.nn.gates import threshold_logit

_IDENTITY, _ZERO_PAD, _PROJECTION = 0, 1, 2
_ALL = math.nan  # a threshold the plan reads as "run the block, do not ask the gate"
_generation = [0]  # bumped whenever any module, parameter or buffer is (re)assigned
_watching: list[Any] = []


class _UnsupportedError(Exception):
    """The model has a part the compiled plan does not describe (it runs in Python)."""


def _bump(*_args: object) -> None:
    _generation[0] += 1


def _watch_registrations() -> None:
    """Count (re)assignments of modules, parameters and buffers anywhere (once per process)."""
    if not _watching:
        registry = torch.nn.modules.module
        _watching.extend([registry.register_module_module_registration_hook(_bump),
                          registry.register_module_parameter_registration_hook(_bump),
                          registry.register_module_buffer_registration_hook(_bump)])


class CompiledForward:
    """Callable attached to a fused :class:`~aignet.models.resnet.ResNet` as ``fast_forward``.

    ``__call__(x)`` returns the model's output, or None where the Python path must run.
    """

    def __init__(self, model: ResNet) -> None:
        self.model = model
        self._plan: Any = None
        self._plan_key: tuple | None = None

    def __deepcopy__(self, memo: dict) -> CompiledForward:
        # The compiled plan cannot be copied; the copy builds its own on first use.
        return CompiledForward(copy.deepcopy(self.model, memo))

    def __getstate__(self) -> dict:
        return {"model": self.model, "_plan": None, "_plan_key": None}

    def __call__(self, x: Tensor) -> ModelOutput | None:
        if torch.is_grad_enabled() or x.dtype != torch.float32 or self.model.training:
            return None
        compiled = kernels.usable(x)
        if compiled is None:
            return None
        plan = self._current_plan(compiled)
        thresholds = None if plan is None else self._thresholds()
        if thresholds is None:
            return None
        out = plan.forward(x, thresholds)
        return ModelOutput(out[0], out[1]) if out else None

    def _current_plan(self, compiled: Any) -> Any:
        """The plan of the model as it is now (None if it cannot have one or has hooks)."""
        if self._plan_key != (_generation[0], id(compiled)):
            _watch_registrations()
            self._plan, self._hook_dicts, self._blocks = _build(self.model, compiled)
            self._plan_key = (_generation[0], id(compiled))
        if self._plan is None or any(self._hook_dicts) or _global_hooks():
            return None
        return self._plan

    def _thresholds(self) -> list[float] | None:
        """Per block the gate's margin threshold (NaN: run it), or None if a mode needs Python."""
        out = []
        for block in self._blocks:
            gate = block.gate
            if gate is None:
                out.append(_ALL)
                continue
            if block.execution != "sparse" or not isinstance(gate, FusedGate):
                return None
            if gate.inference == "deterministic":
                out.append(threshold_logit(gate.threshold) - gate.offset_value)
            elif gate.inference == "all":
                out.append(_ALL)
            else:
                return None
        return out


def _global_hooks() -> bool:
    registry = torch.nn.modules.module
    return bool(registry._global_forward_hooks or registry._global_forward_pre_hooks)


def _build(model: ResNet, compiled: Any) -> tuple[Any, list[dict], list[ResidualBlock]]:
    """(plan or None, the forward-hook dicts of every module, the blocks)."""
    modules = list(model.modules())
    hook_dicts = [d for m in modules for d in (m._forward_hooks, m._forward_pre_hooks)]
    blocks = list(model.blocks())
    try:
        tensors, spec = _describe(model, blocks)
    except _UnsupportedError:
        return None, hook_dicts, blocks
    return compiled.ResNetForward(tensors, spec), hook_dicts, blocks


def _describe(model: ResNet, blocks: list[ResidualBlock]) -> tuple[list[Tensor], list[int]]:
    """The plan's tensors and integer description (see ``csrc/resnet_forward.cpp``)."""
    if not getattr(model, "is_fused", False) or model.preact or model.final_bn is not None:
        raise _UnsupportedError
    tensors: list[Tensor] = []
    spec: list[int] = []
    _conv(model.conv1, tensors, spec)
    _identity(model.bn1)
    pool = model.maxpool
    if pool is None:
        spec += [0, 1, 0]
    else:
        spec += _max_pool(pool)
    spec.append(len(blocks))
    for block in blocks:
        _block(block, tensors, spec)
    if not isinstance(model.avgpool, nn.AdaptiveAvgPool2d) or type(model.fc) is not nn.Linear \
            or model.fc.bias is None:
        raise _UnsupportedError
    tensors += [model.fc.weight, model.fc.bias]
    return tensors, spec


def _block(block: ResidualBlock, tensors: list[Tensor], spec: list[int]) -> None:
    if type(block) not in (BasicBlock, Bottleneck):
        raise _UnsupportedError
    names = [conv for conv, _ in block.conv_bn_pairs]
    spec.append(len(names))
    for conv, bn in block.conv_bn_pairs:
        _conv(getattr(block, conv), tensors, spec)
        _identity(getattr(block, bn))
    ds = block.downsample
    if ds is None:
        spec.append(_IDENTITY)
    elif type(ds) is ZeroPadShortcut:
        spec += [_ZERO_PAD, ds.stride, ds.extra]
    elif isinstance(ds, nn.Sequential) and len(ds) == 2:
        spec.append(_PROJECTION)
        _conv(ds[0], tensors, spec)
        _identity(ds[1])
    else:
        raise _UnsupportedError
    gate = block.gate
    if gate is None:
        spec.append(0)
    elif type(gate) is FusedGate:
        spec.append(1)
        tensors += [gate.weight_t, gate.bias, gate.vector]
    else:
        raise _UnsupportedError


def _conv(conv: nn.Module, tensors: list[Tensor], spec: list[int]) -> None:
    """A fused convolution: square stride/padding/dilation, zero padding, a bias."""
    if type(conv) is not nn.Conv2d or conv.bias is None or conv.padding_mode != "zeros" \
            or isinstance(conv.padding, str):
        raise _UnsupportedError
    params = (conv.stride, conv.padding, conv.dilation)
    if any(p[0] != p[1] for p in params):
        raise _UnsupportedError
    tensors += [conv.weight, conv.bias]
    spec += [conv.stride[0], conv.padding[0], conv.dilation[0], conv.groups]


def _identity(module: nn.Module) -> None:
    if type(module) is not nn.Identity:
        raise _UnsupportedError


def _max_pool(pool: nn.Module) -> list[int]:
    if type(pool) is not nn.MaxPool2d or pool.ceil_mode or pool.return_indices \
            or pool.dilation not in (1, (1, 1)):
        raise _UnsupportedError
    values = [pool.kernel_size, pool.stride, pool.padding]
    if any(isinstance(v, tuple) and v[0] != v[1] for v in values):
        raise _UnsupportedError
    return [v[0] if isinstance(v, tuple) else int(v) for v in values]
