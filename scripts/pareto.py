"""The Pareto study: test error against MACs and against measured images/s, dense vs AIG.

Evaluates every dense run once and every AIG run at each threshold on all test images (error
and exact MACs), then measures images/s of every point in one process, interleaved (sparse,
fused, channels_last, fp32, batch 256, the first 2,048 test images, median over rotating
repetitions, so the drift of a shared machine hits every point alike). Writes the points as
JSON, draws both figures, and says for each AIG point how far it lies below the dense curve
(piecewise linear through the dense points; positive = better than dense at the same cost).
``--controls`` adds dense runs trained otherwise (e.g. as long as an AIG run, with its teacher):
drawn and measured against the curve like the AIG points, but not part of it. Two or more
controls form a second curve, the dense networks at the controls' training budget; every point
is measured against it too (``below_controls_*``).

    python scripts/pareto.py --data-dir ../shared/data \
        --dense runs/resnet20/last.pt runs/resnet32/last.pt ... \
        --aig runs/aig32/last.pt runs/aig56/last.pt \
        --out results/cifar10_pareto.json --figure docs/cifar10_pareto.png

A model may also be given by the name of its shipped weights (``resnet20_cifar/cifar10``,
``aignet models --pretrained``), e.g. to re-measure the shipped models on another machine.
Measure on an otherwise idle machine: images/s is a wall-clock number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ship_weights import portable

from aignet.analysis.evaluation import evaluate_checkpoint
from aignet.engine.inference import Predictor
from aignet.models.pretrained import WEIGHTS_DIR, shipped_entry
from aignet.training.checkpoint import load_checkpoint, load_model, total_epochs, trained_config
from aignet.training.config import build_configured_data

THRESHOLDS = "0.3,0.4,0.5,0.6,0.7,0.8"
ROOT = Path(__file__).resolve().parents[1]


def point(path: str, kind: str, threshold: float | None, data_dir: str | None,
          weights: dict[str, str]) -> dict:
    """One evaluated point of the study (all test images)."""
    r = evaluate_checkpoint(path, data_dir=data_dir, threshold=threshold or 0.5)
    entry = shipped_entry(path)
    epochs = entry["train_epochs"] if entry else total_epochs(load_checkpoint(path)["config"])
    return {"model": r["model"], "kind": kind, "threshold": threshold,
            "top1_error": r["top1_error"], "macs_mean": r["macs_mean"],
            "images_per_s": r["images_per_s"], "train_epochs": epochs,
            "test_images": r["images"], "weights": weight_file(path, weights),
            "checkpoint": portable(path)}


def weight_file(path: str, weights: dict[str, str]) -> str | None:
    """The file in the repo holding a point's weights: shipped weights named MODEL/TAG, or a
    run's entry in the ``--weights`` manifest (None: not shipped)."""
    entry = shipped_entry(path)
    if entry:
        return str((WEIGHTS_DIR / path.split("/")[1] / entry["file"]).relative_to(ROOT))
    return weights.get(portable(path))


def measure_throughput(points: list[dict], paths: dict[str, str], data_dir: str | None,
                       batch: int, images: int, reps: int) -> None:
    """Set every point's ``images_per_s`` from one interleaved timing (see the module doc)."""
    predictors = []
    for p in points:
        model = load_model(paths[p["checkpoint"]])
        predictors.append(Predictor(model, threshold=p["threshold"] or 0.5, channels_last=True))
    data = build_configured_data(trained_config(model).data, data_dir, limit_val=images,
                                 val_batch_size=batch, limit_train=1)
    batches = [x for x, _ in data.val.iter_from(0)]
    seconds: list[list[float]] = [[] for _ in points]
    for rep in range(reps + 1):  # the first round warms up
        shift = rep % len(points)
        for i in list(range(shift, len(points))) + list(range(shift)):
            start = time.perf_counter()
            for x in batches:
                predictors[i](x)
            if rep:
                seconds[i].append(time.perf_counter() - start)
    n = sum(len(x) for x in batches)
    for p, s in zip(points, seconds, strict=True):
        p["images_per_s"] = round(n / statistics.median(s), 1)


def on_curve(p: dict) -> bool:
    """Whether a point is one of the dense curve's (a dense run that is not a control)."""
    return p["kind"] == "dense" and not p.get("control", False)


def is_control(p: dict) -> bool:
    """Whether a point is a dense control (a dense run trained otherwise than the curve)."""
    return p["kind"] == "dense" and p.get("control", False)


def below_dense(points: list[dict], x_key: str, curve=on_curve) -> list[float | None]:
    """Per point: the error of the ``curve`` points (the dense curve by default), interpolated
    piecewise linearly at its cost, minus its error, in points (None: a point of that curve, a
    cost outside its range, or a curve of fewer than two points)."""
    dense = sorted((p[x_key], p["top1_error"]) for p in points if curve(p))
    if len(dense) < 2:
        return [None] * len(points)
    xs, ys = np.array([d[0] for d in dense]), np.array([d[1] for d in dense])
    margins = []
    for p in points:
        x = p[x_key]
        if curve(p) or not xs.min() <= x <= xs.max():
            margins.append(None)
            continue
        margins.append(round(100 * (float(np.interp(x, xs, ys)) - p["top1_error"]), 3))
    return margins


def figure(points: list[dict], path: Path) -> None:
    """Two panels: error vs MACs, error vs images/s; dense as a curve, AIG as threshold sweeps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label, scale in ((axes[0], "macs_mean", "MACs per image (M)", 1e-6),
                                  (axes[1], "images_per_s", "images/s (sparse, fused, CPU)", 1)):
        dense = sorted((p for p in points if on_curve(p)), key=lambda p: p[key])
        ax.plot([p[key] * scale for p in dense], [100 * p["top1_error"] for p in dense],
                "k-o", label="ResNet (dense)")
        for p in dense:
            ax.annotate(p["model"].split("_")[0], (p[key] * scale, 100 * p["top1_error"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        for run in sorted({p["checkpoint"] for p in points if p["kind"] == "aig"}):
            sweep = sorted((p for p in points if p["checkpoint"] == run), key=lambda p: p[key])
            ax.plot([p[key] * scale for p in sweep], [100 * p["top1_error"] for p in sweep],
                    "o--", label=f"{run_label(run)}, {sweep[0]['train_epochs']} epochs")
        controls = sorted((p for p in points if is_control(p)), key=lambda p: p[key])
        for p in controls:
            ax.plot(p[key] * scale, 100 * p["top1_error"], "ks", fillstyle="none",
                    label=f"{run_label(p['checkpoint'])} (dense control), "
                          f"{p['train_epochs']} epochs")
        if len(controls) > 1:
            ax.plot([p[key] * scale for p in controls],
                    [100 * p["top1_error"] for p in controls], "k:")
        # Frame the region around the dense curve and the points within 5 points of it: a
        # collapsed threshold would squash it.
        ceiling = 100 * max(p["top1_error"] for p in dense) + 5
        shown = [p for p in points if 100 * p["top1_error"] <= ceiling]
        top = 100 * max(p["top1_error"] for p in shown) + 0.5
        low = min(p[key] for p in shown) * scale
        high = max(p[key] for p in shown) * scale
        ax.set_xlim(low - 0.05 * (high - low), high + 0.1 * (high - low))
        ax.set_ylim(100 * min(p["top1_error"] for p in shown) - 0.5, top)
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 error (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("CIFAR-10 test error against compute (10,000 test images; AIG: threshold "
                 "sweeps, points above the frame are off scale)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def run_label(checkpoint: str) -> str:
    """A short name of an AIG run: its run folder, or the shipped weights' name."""
    parts = Path(checkpoint).parts
    return parts[1] if parts[0] == "runs" and len(parts) > 2 else checkpoint


def markdown(points: list[dict]) -> str:
    """The points as a Markdown table (what docs/results.md shows)."""
    def margin(v):
        return "" if v is None else f"{v:+.2f}"
    rows = ["| model | run | T | top-1 error | MACs / image | images/s | training epochs | "
            "below dense curve, at equal MACs (points) | at equal images/s (points) | "
            "below the controls' curve, at equal MACs | at equal images/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        t = "" if p["threshold"] is None else f"{p['threshold']:.1f}"
        run = "" if on_curve(p) else run_label(p["checkpoint"])
        rows.append(f"| {p['model']} | {run} | {t} | {100 * p['top1_error']:.2f}% | "
                    f"{p['macs_mean'] / 1e6:.1f}M | {p['images_per_s']:.0f} | "
                    f"{p['train_epochs']} | {margin(p['below_dense_macs_points'])} | "
                    f"{margin(p['below_dense_speed_points'])} | "
                    f"{margin(p.get('below_controls_macs_points'))} | "
                    f"{margin(p.get('below_controls_speed_points'))} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dense", nargs="+", required=True, help="dense run checkpoints")
    parser.add_argument("--aig", nargs="+", required=True, help="AIG run checkpoints")
    parser.add_argument("--controls", nargs="*", default=[],
                        help="dense checkpoints shown against the curve but not part of it")
    parser.add_argument("--thresholds", default=THRESHOLDS, help="AIG thresholds T")
    parser.add_argument("--data-dir", help="folder holding the data set")
    parser.add_argument("--weights", help="manifest of shipped weights (model -> file)")
    parser.add_argument("--out", default="results/cifar10_pareto.json")
    parser.add_argument("--figure", default="docs/cifar10_pareto.png")
    parser.add_argument("--speed-batch", type=int, default=256, help="batch size of images/s")
    parser.add_argument("--speed-images", type=int, default=2048, help="test images timed")
    parser.add_argument("--speed-reps", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the points of --out already measured (same checkpoint and "
                             "threshold) and evaluate only the new ones")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the figure and print the table from --out, measuring nothing")
    args = parser.parse_args()
    if args.plot_only:
        points = json.loads(Path(args.out).read_text())
        figure(points, Path(args.figure))
        print(markdown(points))
        return
    weights = {}
    if args.weights:
        manifest = json.loads(Path(args.weights).read_text())
        folder = Path(args.weights).parent
        weights = {m["source_checkpoint"]: str(folder / m["file"]) for m in manifest["models"]}
    known = {}
    if args.reuse and Path(args.out).is_file():
        old = json.loads(Path(args.out).read_text())
        known = {(p["checkpoint"], p["threshold"]): p for p in old}

    def measured(path: str, kind: str, threshold: float | None) -> dict:
        key = (portable(str(path)), threshold)
        if key not in known:
            return point(path, kind, threshold, args.data_dir, weights)
        return known[key] | {"weights": weight_file(str(path), weights)}  # shipped may change

    torch.set_num_threads(args.threads)
    points = [measured(p, "dense", None) for p in args.dense]
    points += [measured(p, "dense", None) | {"control": True} for p in args.controls]
    for path in args.aig:
        for t in args.thresholds.split(","):
            points.append(measured(path, "aig", float(t)))
            print(json.dumps(points[-1]), flush=True)
    paths = {portable(str(p)): str(p) for p in args.dense + args.controls + args.aig}
    measure_throughput(points, paths, args.data_dir, args.speed_batch, args.speed_images,
                       args.speed_reps)
    for key, axis in (("macs_mean", "macs"), ("images_per_s", "speed")):
        for curve, name in ((on_curve, "dense"), (is_control, "controls")):
            for p, margin in zip(points, below_dense(points, key, curve), strict=True):
                p[f"below_{name}_{axis}_points"] = margin
    Path(args.out).write_text(json.dumps(points, indent=1) + "\n")
    figure(points, Path(args.figure))
    print(markdown(points))


if __name__ == "__main__":
    main()
