"""The whole inference forward pass of a fused ResNet as one compiled call.

At batch 1 a gated block's convolutions take tens of microseconds, and the Python around them
(module calls, the gate's dispatch, the sparse executor's branches) about as much again, so
skipping a block saved only part of its time. :func:`aignet.fuse` attaches a
:class:`CompiledForward` to every fused model; ``model(x)`` then runs stem, blocks and head in
``csrc/resnet_forward.cpp``, which computes what the Python path computes, with the same ATen
and oneDNN kernels (convolutions of channels_last batches on weights packed once for oneDNN,
``csrc/packed_conv.cpp``): logits and decisions are bitwise the same
(``tests/engine/test_compiled_forward.py``).

It runs only where it gives exactly what the Python path would: a CPU batch without autograd
(``torch.inference_mode`` or ``torch.no_grad``), sparse execution, deterministic (or ``all``)
gates, plain post-activation blocks of fused convolutions in float32 or bfloat16 (the casts
between them of :func:`~aignet.engine.quantize.to_bfloat16` included) or int8 branches of
:func:`~aignet.engine.quantize.quantize_branches` (``csrc/quantized_branch.cpp``), no other
hooks, and the compiled kernels available (``AIGNET_KERNELS=off`` turns it off with them).
Anything else runs the Python path. The plan holds the model's tensors by reference: in-place
changes (``load_state_dict``) are seen; replacing a module, parameter or buffer, or an int8
convolution's packed weight, scale or zero point, or adding or removing a hook, rebuilds it; a
change of dtype or device makes it step aside.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import torch
import torch.ao.nn.quantized as nnq
from torch import Tensor, nn

from aignet.engine.fused_gate import FusedGate
from aignet.engine.quantize import CastInput
from aignet.models.resnet import ModelOutput, ResNet
from aignet.nn import kernels
from aignet.nn.blocks import BasicBlock, Bottleneck, ResidualBlock, ZeroPadShortcut
from aignet.nn.gates import threshold_logit

_IDENTITY, _ZERO_PAD, _PROJECTION = 0, 1, 2
_FLOAT, _INT8 = 0, 1  # branch kinds
_CASTS = {torch.float32: 1, torch.bfloat16: 2}  # dtype -> code (0: no cast)
_ALL = math.nan  # a threshold the plan reads as "run the block, do not ask the gate"
_threshold_logit = functools.cache(threshold_logit)
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
        self._plan_key: tuple | None = None  # (registration generation, kernels module)
        self._int8: list[tuple] = []  # _int8_state when the plan was built

    def __deepcopy__(self, memo: dict) -> CompiledForward:
        # The compiled plan cannot be copied; the copy builds its own on first use.
        return CompiledForward(copy.deepcopy(self.model, memo))

    def __getstate__(self) -> dict:
        return {"model": self.model, "_plan": None, "_plan_key": None}

    def __call__(self, x: Tensor) -> ModelOutput | None:
        if torch.is_grad_enabled() or x.dtype not in _CASTS or self.model.training:
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
        """The plan of the model as it is now (None if it cannot have one)."""
        if self._plan_key != (_generation[0], id(compiled)) or self._hooks_changed() \
                or self._int8_changed():
            _watch_registrations()
            self._watch_hooks()
            self._int8 = _int8_state(self.model)
            self._blocks = [(block, block.gate) for block in self.model.blocks()]
            try:
                self._plan = compiled.ResNetForward(*_describe(self.model, self._blocks))
            except _UnsupportedError:
                self._plan = None
            self._plan_key = (_generation[0], id(compiled))
        return None if _global_hooks() else self._plan

    def _watch_hooks(self) -> None:
        """Note every module's hook dicts: those empty now, and the lengths of the others."""
        dicts = [d for m in self.model.modules() for d in (m._forward_hooks, m._forward_pre_hooks)]
        self._empty_hooks = [d for d in dicts if not d]
        self._hooks = [d for d in dicts if d]
        self._hook_counts = [len(d) for d in self._hooks]

    def _hooks_changed(self) -> bool:
        # Two C-level passes over ~700 dicts: a few microseconds a call.
        return any(self._empty_hooks) or list(map(len, self._hooks)) != self._hook_counts

    def _int8_changed(self) -> bool:
        return any(m._packed_params is not p or m.scale != s or m.zero_point != z
                   for m, p, s, z in self._int8)

    def _thresholds(self) -> list[float] | None:
        """Per block the gate's margin threshold (NaN: run it), or None if a mode needs Python."""
        out = []
        for block, gate in self._blocks:  # plain attributes only: this runs at every call
            if gate is None:
                out.append(_ALL)
            elif block.execution != "sparse":
                return None
            elif gate.inference == "deterministic":
                out.append(_threshold_logit(gate.threshold) - gate.offset_value)
            elif gate.inference == "all":
                out.append(_ALL)
            else:
                return None
        return out


def _global_hooks() -> bool:
    registry = torch.nn.modules.module
    return bool(registry._global_forward_hooks or registry._global_forward_pre_hooks)


def _describe(model: ResNet, blocks: list[tuple[ResidualBlock, nn.Module | None]]
              ) -> tuple[list[Tensor], list[int]]:
    """The plan's tensors and integer description (see ``csrc/resnet_forward.cpp``)."""
    if not getattr(model, "is_fused", False) or model.preact or model.final_bn is not None:
        raise _UnsupportedError
    tensors: list[Tensor] = []
    spec: list[int] = []
    # Hooks on the model itself run around its forward; those on its stages never run.
    _no_hooks(*(m for m in (model.conv1, model.bn1, model.maxpool, model.avgpool) if m is not None))
    _conv(model.conv1, tensors, spec)
    _identity(model.bn1)
    pool = model.maxpool
    if pool is None:
        spec += [0, 1, 0]
    else:
        spec += _max_pool(pool)
    spec.append(len(blocks))
    for block, _ in blocks:
        _block(block, tensors, spec)
    if not isinstance(model.avgpool, nn.AdaptiveAvgPool2d) or type(model.fc) is not nn.Linear \
            or model.fc.bias is None or model.fc._forward_hooks:
        raise _UnsupportedError
    spec.append(_cast(model.fc))
    tensors += [model.fc.weight, model.fc.bias]
    return tensors, spec


def _block(block: ResidualBlock, tensors: list[Tensor], spec: list[int]) -> None:
    if type(block) not in (BasicBlock, Bottleneck) or block._forward_hooks:
        raise _UnsupportedError
    spec.append(_cast(block))
    _no_hooks(*list(block.modules())[1:])
    for _, bn in block.conv_bn_pairs:
        _identity(getattr(block, bn))
    convs = [getattr(block, conv) for conv, _ in block.conv_bn_pairs]
    if isinstance(convs[0], nn.Sequential):  # quantized by aignet.engine.quantize
        _int8_branch(convs, tensors, spec)
    else:
        spec += [_FLOAT, len(convs)]
        for conv in convs:
            _conv(conv, tensors, spec)
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
    elif type(gate) is FusedGate and gate.weight_t.dtype == torch.float32:
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


def _int8_branch(convs: list[nn.Module], tensors: list[Tensor], spec: list[int]) -> None:
    """A branch :func:`~aignet.engine.quantize.quantize_branches` converted: ``(Quantize,
    conv)``, the convolutions between, ``(conv, DeQuantize)``."""
    first, last = convs[0], convs[-1]
    if len(convs) < 2 or not isinstance(last, nn.Sequential) or len(first) != 2 \
            or len(last) != 2 or type(first[0]) is not nnq.Quantize \
            or type(last[1]) is not nnq.DeQuantize or first[0].dtype != torch.quint8:
        raise _UnsupportedError
    qconvs = [first[1], *convs[1:-1], last[0]]
    quantize = first[0]
    spec += [_INT8, len(qconvs)]
    tensors += [quantize.scale, quantize.zero_point]
    for conv in qconvs:
        if type(conv) is not nnq.Conv2d or conv.padding_mode != "zeros":
            raise _UnsupportedError
        params = (conv.stride, conv.padding, conv.dilation)
        if any(p[0] != p[1] for p in params):
            raise _UnsupportedError
        weight, bias = conv._weight_bias()
        tensors += [weight, bias, torch.tensor(conv.scale, dtype=torch.float64)]
        spec += [conv.stride[0], conv.padding[0], conv.dilation[0], conv.groups,
                 int(conv.zero_point)]


def _int8_state(model: nn.Module) -> list[tuple]:
    """What a plan copies from the model's int8 convolutions: their packed weights (replaced,
    not changed in place, by ``load_state_dict``), output scales and zero points (plain
    attributes, which no registration hook sees change)."""
    return [(m, m._packed_params, m.scale, m.zero_point)
            for m in model.modules() if type(m) is nnq.Conv2d]


def _cast(module: nn.Module) -> int:
    """The cast code of a module's :class:`~aignet.engine.quantize.CastInput` pre-hook (0: none).

    Any other pre-hook is not described.
    """
    hooks = list(module._forward_pre_hooks.values())
    if not hooks:
        return 0
    if len(hooks) > 1 or type(hooks[0]) is not CastInput or hooks[0].dtype not in _CASTS:
        raise _UnsupportedError
    return _CASTS[hooks[0].dtype]


def _no_hooks(*modules: nn.Module) -> None:
    """The plan calls no module, so it cannot describe a module with hooks."""
    if any(m._forward_hooks or m._forward_pre_hooks for m in modules):
        raise _UnsupportedError


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
