"""Accuracy, per-image MACs and executed blocks over a data set, in any inference mode."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from aignet.engine.flops import MacProfile
from aignet.engine.record import ExecutionRecord
from aignet.models.resnet import ModelOutput
from aignet.training.distributed import DistInfo, gather_objects, sum_across
from aignet.training.progress import Progress

TOPK = (1, 5)


def topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = TOPK) -> list[int]:
    """Number of images whose label is among the top-k logits, for each k."""
    k_max = min(max(ks), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices
    hits = top == labels[:, None]
    return [int(hits[:, :min(k, k_max)].any(1).sum()) for k in ks]


def topk_errors(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = TOPK) -> list[float]:
    """Top-k error (a fraction) of ``logits`` against ``labels`` for each k."""
    return [1.0 - hits / len(labels) for hits in topk_correct(logits, labels, ks)]


def evaluate(forward: Callable[[Tensor], ModelOutput], batches: Iterable[tuple[Tensor, Tensor]],
             profile: MacProfile, *, gates_evaluated: bool = True,
             info: DistInfo | None = None, total: int | None = None,
             label: str = "eval") -> tuple[dict, ExecutionRecord]:
    """Run ``forward`` (an eval-mode model) over ``batches`` and summarise.

    Args:
        forward: maps images to :class:`~aignet.models.ModelOutput` (already in eval mode).
        batches: (images, labels) pairs (this rank's slice under DDP).
        profile: the model's MAC profile for the input size.
        gates_evaluated: False in the ``expected``/``all`` modes (no gate cost).
        info: distributed context; results are combined over ranks.
        total: number of batches, for a progress bar (None: no bar).
        label: the bar's prefix.

    Returns:
        (summary dict, ExecutionRecord of this process's images).
    """
    info = info or DistInfo()
    counts = torch.zeros(3, dtype=torch.float64)  # images, top-1 hits, top-5 hits
    gates, elapsed = [], 0.0
    bar = Progress(total, label, enabled=info.is_main) if total else None
    with torch.inference_mode():
        for step, (images, labels) in enumerate(batches, start=1):
            start = time.perf_counter()
            out = forward(images)
            if out.logits.is_cuda:
                torch.cuda.synchronize()
            elapsed += time.perf_counter() - start
            hits = topk_correct(out.logits, labels)
            counts += torch.tensor([len(labels), *hits], dtype=torch.float64)
            gates.append(out.gates.float().cpu())
            if bar is not None:
                bar.update(step, err=1 - counts[1].item() / counts[0].item())
    if bar is not None:
        bar.close()
    if not gates:
        raise ValueError("evaluation data is empty")
    local = ExecutionRecord.from_gates(torch.cat(gates), profile, gates_evaluated)
    record = ExecutionRecord.cat(gather_objects(local, info)) if info.enabled else local
    counts = sum_across(counts.to(info.device), info).cpu()
    images = counts[0].item()
    summary = {
        "top1_error": 1.0 - counts[1].item() / images,
        "top5_error": 1.0 - counts[2].item() / images,
        "images_per_s": len(local) / elapsed if elapsed else float("nan"),
        **record.summary(),
    }
    return summary, record
