"""What the gates learned: per-class and per-category execution, clustering, threshold sweeps.

Pure functions over an execution record (N, L), the labels and the class groups; figures live in
:mod:`aignet.analysis.plots`, the report in :mod:`aignet.analysis.report`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from aignet.engine.flops import MacProfile
from aignet.engine.record import ExecutionRecord
from aignet.training.evaluate import topk_errors


def class_rates(executed: Tensor, labels: Tensor, num_classes: int) -> np.ndarray:
    """(C, L) fraction of the images of each class that executed each block."""
    executed = executed.float()
    out = np.zeros((num_classes, executed.shape[1]))
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            out[c] = executed[mask].mean(0).numpy()
    return out


def group_rates(executed: Tensor, labels: Tensor, class_group: Sequence[int],
                num_groups: int) -> np.ndarray:
    """(G, L) execution rates over the images of each group."""
    image_group = torch.tensor(class_group)[labels]
    return class_rates(executed, image_group, num_groups)


def max_category_rate_gap(rates: np.ndarray) -> tuple[float, int]:
    """Largest difference between two groups' rates of one layer, and that layer."""
    gaps = rates.max(0) - rates.min(0)
    layer = int(gaps.argmax())
    return float(gaps[layer]), layer


def specialisation(rates: np.ndarray) -> np.ndarray:
    """Per layer: variance of the execution rate across classes (0: class-agnostic)."""
    return rates.var(axis=0)


def executed_histogram(counts: Tensor, num_blocks: int) -> list[int]:
    """How many images executed 0, 1, ..., L blocks."""
    return np.bincount(counts.numpy().astype(int), minlength=num_blocks + 1).tolist()


def cluster_classes(rates: np.ndarray, num_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Average-linkage clustering of classes by their rate vectors (Euclidean).

    Returns:
        (scipy linkage matrix, cluster label per class when cut into ``num_clusters``).
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(rates) < 2:
        raise ValueError("clustering needs at least two classes")
    links = linkage(rates, method="average", metric="euclidean")
    return links, fcluster(links, t=num_clusters, criterion="maxclust") - 1


def adjusted_rand_index(a: Sequence[int], b: Sequence[int]) -> float:
    """Adjusted Rand index of two labelings (1: identical partitions, ~0: chance)."""
    a, b = np.asarray(a), np.asarray(b)
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    pairs = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / pairs(np.array([len(a)]))
    top = (rows + cols) / 2
    return 1.0 if top == expected else float((index - expected) / (top - expected))


def threshold_sweep(run: Callable[[str, float], tuple[Tensor, Tensor]], labels: Tensor,
                    profile: MacProfile, thresholds: Sequence[float]) -> list[dict]:
    """Top-1 error and mean MACs for each deterministic threshold, plus the stochastic mode.

    Args:
        run: ``(mode, threshold) -> (logits, gates)`` over the evaluation images.
        labels: their labels.
        profile: MAC profile of the model.
        thresholds: values of T.
    """
    points = []
    for mode, t in [("deterministic", t) for t in thresholds] + [("stochastic", 0.5)]:
        logits, gates = run(mode, t)
        record = ExecutionRecord.from_gates(gates, profile)
        points.append({"mode": mode, "threshold": t,
                       "top1_error": topk_errors(logits, labels, (1,))[0],
                       "macs_mean": float(record.macs.mean()),
                       "executed_blocks_mean": float(record.executed_blocks.float().mean())})
    return points


def extreme_images(counts: Tensor, labels: Tensor, class_group: Sequence[int], group: int,
                   k: int) -> tuple[list[int], list[int]]:
    """Indices of the ``k`` images of a group with the fewest and the most executed blocks."""
    members = torch.nonzero(torch.tensor(class_group)[labels] == group).squeeze(1)
    if len(members) == 0:
        return [], []
    order = members[torch.argsort(counts[members].float(), stable=True)]
    return order[:k].tolist(), order.flip(0)[:k].tolist()
