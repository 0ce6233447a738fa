"""``aignet analyze CHECKPOINT``: what the gates learned, as figures, numbers and a report.

Writes to ``--out``: PNG figures, ``analysis.json`` (every number behind them) and
``report.html`` (self-contained).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from aignet.analysis import plots
from aignet.analysis import stats as analysis
from aignet.analysis.evaluation import evaluate_checkpoint
from aignet.analysis.groups import class_to_group, default_groups, load_groups
from aignet.analysis.report import Figure, Section, table, write_report
from aignet.engine.inference import Predictor
from aignet.training.checkpoint import load_model, trained_config
from aignet.training.config import build_configured_data
from aignet.training.evaluate import topk_errors
from aignet.training.progress import Progress

SWEEP_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))


def _collect(predictor: Predictor, batches, limit: int | None = None,
             total: int | None = None, label: str = "analyze"):
    logits, gates, labels, seen = [], [], [], 0
    bar = Progress(total, label) if total else None
    for step, (images, y) in enumerate(batches, start=1):
        out = predictor(images)
        logits.append(out.logits.float().cpu())
        gates.append(out.record.gates)
        labels.append(y.cpu())
        seen += len(y)
        if bar is not None:
            bar.update(step)
        if limit and seen >= limit:
            break
    if bar is not None:
        bar.close()
    n = limit or seen
    return torch.cat(logits)[:n], torch.cat(gates)[:n], torch.cat(labels)[:n]


def measure_speedup(model, images: torch.Tensor, reps: int = 7,
                    dense_model=None) -> dict:
    """Dense vs sparse (deterministic) time of one batch, both fused, interleaved, medians.

    The dense reference is ``dense_model`` (e.g. the trained plain ResNet) when given, else the
    same model with every block executed (``all`` mode).
    """
    dense = Predictor(dense_model, channels_last=True) if dense_model is not None else \
        Predictor(model, mode="all", channels_last=True)
    sparse = Predictor(model, mode="deterministic", channels_last=True)
    times = {"dense": [], "sparse": []}
    for predictor in (dense, sparse):
        predictor(images)  # warm-up
    for _ in range(reps):
        for name, predictor in (("dense", dense), ("sparse", sparse)):
            start = time.perf_counter()
            predictor(images)
            times[name].append(time.perf_counter() - start)
    t_dense, t_sparse = (statistics.median(times[k]) for k in ("dense", "sparse"))
    return {"batch_size": len(images), "dense_s": t_dense, "sparse_s": t_sparse,
            "measured_speedup": t_dense / t_sparse, "threads": torch.get_num_threads()}


def _read_log(checkpoint: Path) -> list[dict]:
    log = checkpoint.parent / "log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def analyze(checkpoint: str | Path, out: str | Path, *, data_dir: str | None = None,
            groups_path: str | None = None, compare: tuple[str, ...] = (),
            limit: int | None = None, sweep_images: int = 2000, grid_images: int = 6,
            command: str = "") -> dict:
    """Run every analysis of a checkpoint; returns the numbers written to analysis.json."""
    checkpoint, out = Path(checkpoint), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(str(checkpoint))
    config = trained_config(model)
    info = model.pretrained_cfg
    classes = info["classes"]
    groups = load_groups(groups_path, classes) if groups_path else \
        default_groups(config.data.name, classes) or {"all classes": list(classes)}
    class_group = class_to_group(groups, classes)
    group_names = list(groups)
    data = build_configured_data(config.data, data_dir, limit_val=limit, limit_train=1)
    predictor = Predictor(model, channels_last=True)
    logits, gates, labels = _collect(predictor, data.val.iter_from(0), total=len(data.val))
    profile = predictor.profile(info["input_size"], info["input_size"])
    result = _numbers(model, logits, gates, labels, profile, classes, class_group, group_names)
    result["sweep"] = _sweep(model, data, profile, sweep_images)
    result["speed"] = measure_speedup(model, next(data.val.iter_from(0))[0][:256])
    result["trajectory"] = _trajectory(_read_log(checkpoint))
    result["compare"] = _compare(checkpoint, compare, data_dir, limit, result)
    result.update(checkpoint=str(checkpoint), model=config.model.name, data=config.data.name,
                  groups=groups, command=command)
    figures = _figures(result, data, out, grid_images, class_group, group_names, classes)
    (out / "analysis.json").write_text(json.dumps(_jsonable(result), indent=1))
    sections = _sections(result, figures) + _attack_sections(out)
    write_report(out / "report.html", f"ConvNet-AIG analysis: {config.model.name} on "
                 f"{config.data.name}", command or f"aignet analyze {checkpoint}", sections)
    return result


def _numbers(model, logits, gates, labels, profile, classes, class_group, group_names) -> dict:
    from aignet.engine.record import ExecutionRecord

    record = ExecutionRecord.from_gates(gates, profile)
    executed = record.executed
    rates_c = analysis.class_rates(executed, labels, len(classes))
    rates_g = analysis.group_rates(executed, labels, class_group, len(group_names))
    gap, gap_layer = analysis.max_category_rate_gap(rates_g)
    counts = record.executed_blocks
    per_group_hist = {
        name: analysis.executed_histogram(counts[torch.tensor(class_group)[labels] == g],
                                          model.num_blocks)
        for g, name in enumerate(group_names)}
    numbers = {
        "images": len(labels), "num_blocks": model.num_blocks, "gated": list(model.gated),
        **dict(zip(("top1_error", "top5_error"), topk_errors(logits, labels), strict=True)),
        **record.summary(), "mac_saving": 1.0 - record.summary()["mac_ratio"],
        "class_rates": rates_c.round(5).tolist(), "group_rates": rates_g.round(5).tolist(),
        "max_category_rate_gap": gap, "max_gap_layer": gap_layer,
        "specialisation": analysis.specialisation(rates_c).round(6).tolist(),
        "executed_histogram": analysis.executed_histogram(counts, model.num_blocks),
        "executed_histogram_per_group": per_group_hist,
        "executed_per_image": counts.tolist(), "labels": labels.tolist(),
    }
    if len(group_names) > 1 and len(classes) > 2:
        links, clusters = analysis.cluster_classes(rates_c, len(group_names))
        numbers["clusters"] = clusters.tolist()
        numbers["linkage"] = links.tolist()
        numbers["adjusted_rand_index"] = analysis.adjusted_rand_index(clusters, class_group)
    return numbers


def _sweep(model, data, profile, sweep_images: int) -> list[dict]:
    predictors: dict[tuple[str, float], Predictor] = {}

    def run(mode: str, threshold: float):
        key = (mode, threshold)
        if key not in predictors:
            generator = torch.Generator().manual_seed(0) if mode == "stochastic" else None
            predictors[key] = Predictor(model, mode=mode, threshold=threshold,
                                        channels_last=True, generator=generator)
        logits, gates, _ = _collect(predictors[key], data.val.iter_from(0), sweep_images)
        return logits, gates

    labels = torch.cat([y.cpu() for _, y in data.val.iter_from(0)])[:sweep_images]
    return analysis.threshold_sweep(run, labels, profile, SWEEP_THRESHOLDS)


def _trajectory(log: list[dict]) -> dict:
    key = "val_layer_rates" if log and "val_layer_rates" in log[-1] else "train_layer_rates"
    rows = [e for e in log if key in e]
    return {"source": key, "epochs": [e["epoch"] for e in rows],
            "rates": [e[key] for e in rows]}


def _compare(checkpoint: Path, others: tuple[str, ...], data_dir, limit, result) -> list[dict]:
    models = [{"name": checkpoint.parent.name or "model", "checkpoint": str(checkpoint),
               "top1_error": result["top1_error"], "macs_mean": result["macs_mean"],
               "gated": any(result["gated"])}]
    for path in others:
        r = evaluate_checkpoint(path, data_dir=data_dir, limit=limit)
        models.append({"name": Path(path).parent.name or Path(path).stem, "checkpoint": path,
                       "top1_error": r["top1_error"], "macs_mean": r["macs_mean"],
                       "gated": r["gated_blocks"] > 0})
    return models


def _figures(r, data, out: Path, k: int, class_group, group_names, classes) -> dict:
    figs = {
        "heatmap": plots.heatmap(np.array(r["class_rates"]), classes, class_group, group_names,
                                 out / "heatmap.png"),
        "executed": plots.executed_histograms(r["executed_histogram"],
                                              r["executed_histogram_per_group"],
                                              out / "executed_layers.png"),
        "sweep": plots.threshold_sweep(r["sweep"], r["macs_dense"], out / "threshold_sweep.png"),
        "compare": plots.accuracy_vs_macs(r["compare"], out / "accuracy_vs_macs.png"),
        "specialisation": plots.specialisation_bars(np.array(r["specialisation"]),
                                                    out / "specialisation.png"),
    }
    if r["trajectory"]["epochs"]:
        figs["trajectory"] = plots.trajectories(r["trajectory"]["epochs"],
                                                np.array(r["trajectory"]["rates"]), r["gated"],
                                                out / "trajectories.png")
    if "linkage" in r:
        figs["dendrogram"] = plots.dendrogram(np.array(r["linkage"]), classes, class_group,
                                              group_names, out / "dendrogram.png")
    images = getattr(data.val, "images", None)
    if images is not None:
        counts = torch.tensor(r["executed_per_image"])
        labels = torch.tensor(r["labels"])
        rows = {name: analysis.extreme_images(counts, labels, class_group, g, k)
                for g, name in enumerate(group_names)}
        figs["grid"] = plots.image_grid(images[: len(labels)].cpu().numpy(), rows, counts,
                                        out / "image_grid.png")
    return figs


def _sections(r: dict, figs: dict) -> list[Section]:
    speed = r["speed"]
    key_numbers = table([
        ("model / data", f"{r['model']} / {r['data']} ({r['images']} test images)"),
        ("top-1 / top-5 error", f"{100 * r['top1_error']:.2f}% / {100 * r['top5_error']:.2f}%"),
        ("mean MACs per image", f"{r['macs_mean'] / 1e6:.2f}M +- {r['macs_std'] / 1e6:.2f}M"),
        ("dense MACs", f"{r['macs_dense'] / 1e6:.2f}M"),
        ("MAC saving vs the dense network", f"{100 * r['mac_saving']:.1f}%"),
        ("executed layers per image", f"{r['executed_blocks_mean']:.2f} of {r['num_blocks']}"),
        ("measured sparse speed-up (this machine)",
         f"{speed['measured_speedup']:.2f}x (batch {speed['batch_size']}, "
         f"{speed['threads']} threads, dense {1e3 * speed['dense_s']:.1f} ms, "
         f"sparse {1e3 * speed['sparse_s']:.1f} ms)"),
        ("max category rate gap", f"{r['max_category_rate_gap']:.3f} (layer "
                                  f"{r['max_gap_layer']})"),
        ("class clusters vs groups (ARI)", f"{r['adjusted_rand_index']:.3f}"
         if "adjusted_rand_index" in r else "n/a (one group)"),
    ], ("quantity", "value"))
    sections = [Section("Key numbers", key_numbers)]
    order = [("heatmap", "Execution rate per class and layer",
              "Rows: classes grouped by category (white lines). Columns: residual layers."),
             ("executed", "How many layers each image uses", ""),
             ("trajectory", "Execution rates during training", "From the run's log.jsonl."),
             ("sweep", "Deterministic threshold sweep", "Top-1 error against mean MACs."),
             ("compare", "Accuracy vs MACs across checkpoints", ""),
             ("grid", "Images using the fewest and the most layers",
              "Titles: number of executed layers."),
             ("dendrogram", "Does the network discover the class hierarchy?",
              "Average-linkage clustering of classes by their per-layer execution rates; the "
              "adjusted Rand index compares a cut into as many clusters as groups with the "
              "shipped groups."),
             ("specialisation", "Layer specialisation",
              "Variance across classes of each layer's execution rate.")]
    figures = [Figure(title, figs[key], caption) for key, title, caption in order if key in figs]
    sections.append(Section("Figures", "", figures))
    return sections


def _attack_sections(out: Path) -> list[Section]:
    """The robustness section, when ``aignet attack`` wrote its results into ``out``."""
    path = out / "attack.json"
    if not path.is_file():
        return []
    from aignet.analysis.robustness import attack_figures, attack_section

    result = json.loads(path.read_text())
    return [attack_section(result, attack_figures(result, out))]


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
