"""Batched inference with real block skipping, per-image records and exact MACs.

    predictor = aignet.Predictor(model, mode="deterministic", threshold=0.5)
    logits, record = predictor(images)          # record: ExecutionRecord
    record.summary()["macs_mean"]

The predictor runs an eval-mode (by default fused, see :mod:`aignet.engine.fuse`) copy of the model
under ``torch.inference_mode()`` with sparse execution; the original model is left untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from aignet.engine.flops import MacProfile, profile_macs
from aignet.engine.fuse import eval_copy, fuse
from aignet.engine.quantize import KEEP_FLOAT, check_precision, input_dtype, to_precision
from aignet.engine.record import ExecutionRecord
from aignet.models.resnet import ModelOutput
from aignet.nn.blocks import set_execution
from aignet.nn.gates import evaluates_gates, set_gate_mode


class Prediction(NamedTuple):
    """Logits of a batch and what it executed."""

    logits: Tensor
    record: ExecutionRecord


class Predictor:
    """Callable inference engine for an aignet model.

    Args:
        model: a trained aignet ResNet (not modified).
        mode: gate inference mode (``deterministic``, ``stochastic``, ``expected``, ``all``).
        threshold: deterministic threshold T.
        execution: ``"sparse"`` (skip closed blocks) or ``"masked"`` (the original behaviour).
        fused: fold BatchNorms and collapse gates first (same results, faster).
        channels_last: run in channels_last memory format.
        generator: random generator for the stochastic mode.
        precision: ``"fp32"``; ``"bf16"``: convolutions and linear layers in bfloat16 (AMX on
            recent x86 CPUs), gates and ``keep_float`` in float32; ``"int8"``: residual
            branches quantized after training (needs ``calibration`` and ``fused``, see
            :mod:`aignet.engine.quantize`). Logits are returned in float32.
        calibration: int8 only: normalised images (one batch or an iterable of batches), a few
            hundred training images.
        keep_float: bf16 and int8: module-name prefixes of blocks that stay in float32
            (default: the first stage; ``()`` converts every block).
    """

    def __init__(self, model: nn.Module, *, mode: str = "deterministic", threshold: float = 0.5,
                 execution: str = "sparse", fused: bool = True, channels_last: bool = False,
                 generator: torch.Generator | None = None, precision: str = "fp32",
                 calibration: Tensor | Iterable[Tensor] | None = None,
                 keep_float: Sequence[str] = KEEP_FLOAT) -> None:
        check_precision(precision)
        self.source = model
        self.mode = mode
        self.channels_last = channels_last
        runner = fuse(model, channels_last=channels_last) if fused else eval_copy(model)
        set_gate_mode(runner, inference=mode, threshold=threshold, generator=generator)
        set_execution(runner, execution)
        self.dtype = torch.float32  # what int8 calibration takes; then the runner's own
        if isinstance(calibration, Tensor):
            calibration = [calibration]
        if calibration is not None:
            calibration = (self._prepare(x) for x in calibration)
        self.model = to_precision(runner, precision, calibration, keep_float)
        self.dtype = input_dtype(self.model)
        self._profiles: dict[tuple[int, int], MacProfile] = {}

    def profile(self, height: int, width: int) -> MacProfile:
        """MAC profile for one input size (computed once, on the unfused model)."""
        key = (height, width)
        if key not in self._profiles:
            self._profiles[key] = profile_macs(self.source, key)
        return self._profiles[key]

    def _prepare(self, images: Tensor) -> Tensor:
        images = images.to(self.dtype)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def forward(self, images: Tensor) -> ModelOutput:
        """The runner's raw output for ``images`` in the predictor's dtype and memory format."""
        return self.model(self._prepare(images))

    def __call__(self, images: Tensor) -> Prediction:
        with torch.inference_mode():
            out = self.forward(images)
        profile = self.profile(images.shape[-2], images.shape[-1])
        record = ExecutionRecord.from_gates(out.gates, profile,
                                            gates_evaluated=evaluates_gates(self.mode))
        return Prediction(out.logits.float(), record)

    def classify(self, images: Tensor, top_k: int = 5) -> list[dict]:
        """Per image: the ``top_k`` (class index, probability) pairs, executed blocks and MACs.

        Args:
            images: a normalised batch (B, C, H, W).
            top_k: how many classes to report (at most the number of classes).
        """
        logits, record = self(images)
        probs = logits.float().softmax(dim=1)
        p, index = probs.topk(min(top_k, probs.shape[1]), dim=1)
        blocks, macs = record.executed_blocks.tolist(), record.macs.tolist()
        return [{"top": list(zip(index[i].tolist(), p[i].tolist(), strict=True)),
                 "executed_blocks": int(blocks[i]), "macs": float(macs[i])}
                for i in range(len(images))]
