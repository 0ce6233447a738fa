"""Reduced-precision forms of a fused model: bf16 everywhere but the gates, or int8 branches.

Both keep the blocks named in ``keep_float`` (by default the first stage, ``layer1``) in
float32; bf16 then keeps the input and the stem in float32 too, and casts where the precision
changes between blocks. Rounding early in the network reaches every later gate: rounding the
input alone to bfloat16 moved 0.2% of the first gate's decisions of the Fashion-MNIST demo
model, and a fully bf16 demo model agreed with fp32 on 97.2% of its decisions against 99.1%
with its first stage in float32 (docs/performance.md).

int8 uses PyTorch's eager-mode post-training quantization (``torch.ao.quantization``): sparse
execution is data-dependent control flow, which the graph-based flows (FX, PT2E) cannot trace,
whereas the eager flow converts module by module. Each residual branch becomes
``quantize -> int8 conv -> ... -> int8 conv -> dequantize``; the gates, the shortcuts, the stem
and the classifier stay in float32. Calibration runs the model with sparse execution, so each
branch's observers see exactly the images that run that branch; a branch that no calibration
image runs has nothing to calibrate on and stays in float32.

By default the first stage (``layer1``) stays in float32 as well: its quantization error
reaches every later gate. On an AIG-56 (5 gated epochs) it moved 1.7% of the gate decisions
(98.3% agreement with fp32); kept in float32, 0.5% (99.5%). See docs/performance.md.

``torch.ao.quantization`` is deprecated in favour of torchao, whose static int8 path for
convolutions is PT2E (export + inductor). Exporting each branch on its own would fit sparse
execution; this module keeps the eager flow until that path runs without a compiler here.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence

import torch
import torch.ao.quantization as tq
from torch import Tensor, nn
from torch.ao.quantization.observer import HistogramObserver, PerChannelMinMaxObserver

from aignet.nn.blocks import ResidualBlock
from aignet.nn.gates import iter_gates

# What a model computes in; the dtype it takes its images in follows (input_dtype).
PRECISIONS = ("fp32", "bf16", "int8")
# Module-name prefixes kept in float32 by default in bf16 and int8.
KEEP_FLOAT = ("layer1",)
# oneDNN runs int8 convolutions on AMX; FBGEMM (behind "x86") is the fallback.
_ENGINES = ("onednn", "x86", "fbgemm")


def check_precision(precision: str) -> None:
    """Raise a ValueError naming the choices for an unknown precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def quantized_engine() -> str:
    """Select and return the quantized engine int8 models run on (process-wide setting)."""
    supported = torch.backends.quantized.supported_engines
    engine = next((e for e in _ENGINES if e in supported), None)
    if engine is None:
        raise RuntimeError("this PyTorch build has no x86 quantized engine; int8 needs "
                           "onednn, x86 or fbgemm")
    torch.backends.quantized.engine = engine
    return engine


def _qconfig() -> tq.QConfig:
    # Full 8-bit activations: AMX/VNNI kernels need no reduced range against overflow.
    return tq.QConfig(
        activation=HistogramObserver.with_args(reduce_range=False),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                  qscheme=torch.per_channel_symmetric))


def _branch_convs(block: ResidualBlock) -> list[str]:
    """Names of the branch's convolutions in order (conv1, conv2, ...), shortcut excluded."""
    return sorted(n for n, m in block.named_children()
                  if n.startswith("conv") and isinstance(m, nn.Conv2d))


def quantize_branches(model: nn.Module, calibration: Iterable[Tensor],
                      keep_float: Sequence[str] = KEEP_FLOAT) -> nn.Module:
    """Quantize every residual branch of a fused, eval-mode model to int8, in place.

    Args:
        model: a model from :func:`aignet.fuse` (BatchNorms folded into the convolutions).
        calibration: batches of normalised images in the model's memory format; a few hundred
            training images are enough.
        keep_float: module-name prefixes (e.g. ``"layer1"``, ``"layer3.4"``) whose branches stay
            in float32.

    Returns:
        ``model``, with int8 branches.
    """
    if not getattr(model, "is_fused", False):
        raise ValueError("quantize_branches needs a fused model (aignet.fuse(model))")
    batches = list(calibration)
    if not batches:
        raise ValueError("int8 calibration got no images")
    quantized_engine()
    runs = _branch_runs(model, batches)
    qconfig = _qconfig()
    for (name, block), count in zip(_named_blocks(model), runs, strict=True):
        if count == 0 or name.startswith(tuple(keep_float)):
            continue
        convs = _branch_convs(block)
        first, last = convs[0], convs[-1]
        setattr(block, first, nn.Sequential(tq.QuantStub(), getattr(block, first)))
        setattr(block, last, nn.Sequential(getattr(block, last), tq.DeQuantStub()))
        for conv in convs:
            getattr(block, conv).qconfig = qconfig
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao on every weight it packs, and
        # that nothing is quantized when every block is kept in float: both expected here.
        for message in ("torch.quantize_per", "None of the submodule got qconfig"):
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated",
                                category=DeprecationWarning)
        tq.prepare(model, inplace=True)
        with torch.inference_mode():
            for batch in batches:
                model(batch)
        return tq.convert(model, inplace=True)


def _named_blocks(model: nn.Module) -> list[tuple[str, ResidualBlock]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ResidualBlock)]


def _branch_runs(model: nn.Module, batches: list[Tensor]) -> list[int]:
    """How many calibration images run each block's branch, in execution order."""
    runs = torch.zeros(len(_named_blocks(model)))
    with torch.inference_mode():
        for batch in batches:
            runs += (model(batch).gates != 0).sum(0).float().cpu()
    return [int(r) for r in runs]


def to_precision(model: nn.Module, precision: str,
                 calibration: Iterable[Tensor] | None = None,
                 keep_float: Sequence[str] = KEEP_FLOAT) -> nn.Module:
    """Convert a fused model to ``precision`` in place: ``fp32`` (unchanged), ``bf16`` (all but
    the gates and ``keep_float`` in bfloat16, see :func:`to_bfloat16`) or ``int8`` (branches
    quantized, see :func:`quantize_branches`)."""
    check_precision(precision)
    if precision == "bf16":
        to_bfloat16(model, keep_float)
    elif precision == "int8":
        if calibration is None:
            raise ValueError("precision int8 needs calibration images (a few hundred training "
                             "images), e.g. Predictor(model, precision='int8', calibration=x)")
        quantize_branches(model, calibration, keep_float)
    return model


def to_bfloat16(model: nn.Module, keep_float: Sequence[str] = KEEP_FLOAT) -> nn.Module:
    """Convert a ResNet to bfloat16 in place, except its gates and the blocks in ``keep_float``.

    When the first block stays in float32 the stem does as well, so the input is never rounded
    (:func:`input_dtype` says what the model takes). Each module whose dtype differs from the
    one before it casts its input on entry.
    """
    blocks = _named_blocks(model)
    kept = [block for name, block in blocks if name.startswith(tuple(keep_float))]
    if blocks and kept and kept[0] is blocks[0][1]:
        kept.append(model.conv1)
    kept += list(iter_gates(model))  # decisions stay in float32
    # Their exact values: a round trip through bfloat16 would round the weights they keep.
    saved = [copy.deepcopy(module.state_dict()) for module in kept]
    model.to(torch.bfloat16)
    for module, state in zip(kept, saved, strict=True):
        module.float().load_state_dict(state)
    head = [m for m in (getattr(model, "final_bn", None), model.fc) if m is not None]
    previous = _dtype(model.conv1)
    for module in [block for _, block in blocks] + head:
        if _dtype(module) != previous:
            module.register_forward_pre_hook(CastInput(_dtype(module)))
        previous = _dtype(module)
    return model


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a model from :func:`to_precision` takes its images in (its stem's)."""
    return _dtype(model.conv1)


def _dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a module's first floating-point weight (a conv's, not its gate's)."""
    return next(p.dtype for n, p in module.named_parameters() if "gate" not in n)


class CastInput:
    """Forward pre-hook: the module's first input in ``dtype``."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (args[0].to(self.dtype), *args[1:])
