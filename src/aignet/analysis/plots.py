"""Figures of the analysis (matplotlib, imported here only; Agg backend, PNG files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def heatmap(rates: np.ndarray, classes: Sequence[str], class_group: Sequence[int],
            group_names: Sequence[str], path: Path) -> Path:
    """Execution rate per class (rows, ordered and labelled by group) and residual layer."""
    plt = _plt()
    order = sorted(range(len(classes)), key=lambda c: (class_group[c], c))
    height = min(2 + 0.28 * len(classes), 40)
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * rates.shape[1] + 3), height))
    image = ax.imshow(rates[order], aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")
    if len(classes) <= 60:
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels([f"{classes[c]} ({group_names[class_group[c]]})" for c in order],
                           fontsize=8)
    bounds = [i for i in range(1, len(order)) if class_group[order[i]] != class_group[order[i - 1]]]
    for b in bounds:
        ax.axhline(b - 0.5, color="white", linewidth=1.5)
    ax.set_xlabel("residual layer")
    ax.set_title("Execution rate per class and layer")
    fig.colorbar(image, ax=ax, label="execution rate")
    return _save(fig, path)


def executed_histograms(overall: Sequence[int], per_group: dict[str, Sequence[int]],
                        path: Path) -> Path:
    """Distribution of the number of executed layers, overall and per group (normalised)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(overall))
    total = max(sum(overall), 1)
    ax.bar(x, np.asarray(overall) / total, color="lightgray", label="all images")
    for name, hist in per_group.items():
        ax.plot(x, np.asarray(hist) / max(sum(hist), 1), marker="o", markersize=3, label=name)
    ax.set_xlabel("number of executed residual layers")
    ax.set_ylabel("fraction of images")
    ax.legend(fontsize=8)
    ax.set_title("Executed layers per image")
    return _save(fig, path)


def trajectories(epochs: Sequence[int], rates: np.ndarray, gated: Sequence[bool],
                 path: Path) -> Path:
    """Execution rate of every gated layer over training epochs (rates: epochs x layers)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.get_cmap("viridis")
    layers = [i for i, g in enumerate(gated) if g]
    for j, layer in enumerate(layers):
        ax.plot(epochs, rates[:, layer], color=cmap(j / max(len(layers) - 1, 1)), linewidth=1,
                marker="o", markersize=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("execution rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Execution rate of each gated layer during training (early: dark)")
    return _save(fig, path)


def threshold_sweep(points: Sequence[dict], macs_dense: float, path: Path) -> Path:
    """Top-1 error against mean MACs for deterministic thresholds and the stochastic mode."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    det = [p for p in points if p["mode"] == "deterministic"]
    ax.plot([p["macs_mean"] / 1e6 for p in det], [100 * p["top1_error"] for p in det],
            marker="o", label="deterministic, T = 0.1 ... 0.9")
    for p in det:
        ax.annotate(f"{p['threshold']:.1f}", (p["macs_mean"] / 1e6, 100 * p["top1_error"]),
                    fontsize=7, textcoords="offset points", xytext=(3, 3))
    for p in points:
        if p["mode"] == "stochastic":
            ax.scatter([p["macs_mean"] / 1e6], [100 * p["top1_error"]], color="red", zorder=3,
                       label="stochastic")
    ax.axvline(macs_dense / 1e6, color="gray", linestyle="--", label="dense network")
    ax.set_xlabel("mean MACs per image (M)")
    ax.set_ylabel("top-1 error (%)")
    ax.legend(fontsize=8)
    ax.set_title("Threshold sweep")
    return _save(fig, path)


def accuracy_vs_macs(models: Sequence[dict], path: Path) -> Path:
    """Top-1 error against mean MACs for several checkpoints (AIG and dense)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        marker = "o" if m.get("gated") else "s"
        ax.scatter(m["macs_mean"] / 1e6, 100 * m["top1_error"], marker=marker, s=50)
        ax.annotate(m["name"], (m["macs_mean"] / 1e6, 100 * m["top1_error"]), fontsize=8,
                    textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("mean MACs per image (M)")
    ax.set_ylabel("top-1 error (%)")
    ax.set_title("Accuracy vs compute (circles: AIG, squares: dense)")
    return _save(fig, path)


def image_grid(images: np.ndarray, rows: dict[str, tuple[list[int], list[int]]],
               counts: Sequence[int], path: Path) -> Path:
    """Per group: the images with the fewest (left) and most (right) executed layers.

    Args:
        images: uint8 (N, C, H, W).
        rows: group -> (fewest indices, most indices).
        counts: executed layers per image (shown in each title).
    """
    plt = _plt()
    k = max((len(a) for a, _ in rows.values()), default=1)
    fig, axes = plt.subplots(len(rows), 2 * k, figsize=(1.1 * 2 * k, 1.3 * len(rows) + 0.4),
                             squeeze=False)
    for r, (group, (fewest, most)) in enumerate(rows.items()):
        for j, index in enumerate(list(fewest) + [None] * (k - len(fewest)) + list(most)):
            ax = axes[r, j]
            ax.axis("off")
            if index is None:
                continue
            img = images[index].transpose(1, 2, 0)
            ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img, cmap="gray")
            ax.set_title(str(int(counts[index])), fontsize=7)
        axes[r, 0].text(-0.3, 0.5, group, transform=axes[r, 0].transAxes, ha="right",
                        va="center", fontsize=8)
    fig.suptitle("Fewest (left) and most (right) executed layers per group", fontsize=9)
    return _save(fig, path)


def dendrogram(links: np.ndarray, classes: Sequence[str], class_group: Sequence[int],
               group_names: Sequence[str], path: Path) -> Path:
    """Hierarchical clustering of classes by their execution-rate vectors, leaves by group."""
    from scipy.cluster.hierarchy import dendrogram as draw

    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(classes)), 4))
    labels = [f"{c} ({group_names[g]})" for c, g in zip(classes, class_group, strict=True)]
    draw(links, labels=labels if len(classes) <= 80 else None, ax=ax, leaf_rotation=90,
         leaf_font_size=8, color_threshold=0)
    ax.set_ylabel("distance between rate vectors")
    ax.set_title("Classes clustered by the layers they use")
    return _save(fig, path)


def specialisation_bars(scores: np.ndarray, path: Path) -> Path:
    """Variance across classes of each layer's execution rate."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(scores)), scores, color="teal")
    ax.set_xlabel("residual layer")
    ax.set_ylabel("variance across classes")
    ax.set_title("Layer specialisation")
    return _save(fig, path)


def attack_curves(models: Sequence[dict], path: Path) -> Path:
    """Top-1 accuracy against epsilon per model/mode: FGSM (left, +JPEG dashed), PGD (right)."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    colors = plt.get_cmap("tab10")
    for i, m in enumerate(models):
        label, c, eps = f"{m['model']} ({m['mode']})", colors(i % 10), m["eps"]
        left.plot(eps, m["fgsm"], color=c, marker="o", label=label)
        left.plot(eps, m["fgsm_jpeg"], color=c, linestyle="--", label=f"{label} + JPEG")
        if "fgsm_eot" in m:
            left.plot(eps, m["fgsm_eot"], color=c, linestyle=":", marker="x",
                      label=f"{label} EOT")
        right.plot(eps, m["pgd"], color=c, marker="o", label=label)
        right.plot(eps, m["pgd_jpeg"], color=c, linestyle="--", label=f"{label} + JPEG")
        if "pgd_eot" in m:
            right.plot(eps, m["pgd_eot"], color=c, linestyle=":", marker="x",
                       label=f"{label} EOT")
    for ax, name in ((left, "FGSM"), (right, "PGD")):
        ax.set_xlabel("epsilon (pixel scale)")
        ax.set_title(name)
        ax.set_ylim(0, 1)
    left.set_ylabel("top-1 accuracy")
    left.legend(fontsize=7)
    return _save(fig, path)


def rates_before_after(models: Sequence[dict], path: Path) -> Path:
    """Per-layer execution rates of a class group on clean and FGSM images."""
    plt = _plt()
    fig, axes = plt.subplots(len(models), 1, figsize=(8, 2.6 * len(models)), squeeze=False)
    for ax, m in zip(axes[:, 0], models, strict=True):
        r = m["rates"]
        x = np.arange(len(r["before"]))
        ax.bar(x - 0.2, r["before"], width=0.4, label="clean")
        ax.bar(x + 0.2, r["after"], width=0.4, label=f"FGSM eps {r['eps']}")
        ax.set_title(f"{m['model']} ({m['mode']}), group {r['group']}: mean |change| "
                     f"{r['mean_abs_change']:.3f}", fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("execution rate")
    axes[-1, 0].set_xlabel("residual layer")
    axes[0, 0].legend(fontsize=8)
    return _save(fig, path)
