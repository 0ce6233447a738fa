"""Evaluation runs of trained models: ``evaluate_checkpoint`` (``aignet eval``),
``bench_checkpoint`` (``aignet bench`` of trained weights) and ``recalibrate_checkpoint``
(``aignet recalibrate``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from aignet.engine.bench import benchmark_model
from aignet.engine.inference import Predictor
from aignet.engine.recalibrate import recalibrate_bn
from aignet.nn.gates import evaluates_gates, set_gate_mode
from aignet.nn.target_rates import check_rate
from aignet.training.checkpoint import load_checkpoint, load_model, save_atomic, trained_config
from aignet.training.config import build_configured_data
from aignet.training.distributed import resolve_device
from aignet.training.evaluate import evaluate


def evaluate_checkpoint(path: str, *, data_dir: str | None = None, mode: str = "deterministic",
                        threshold: float = 0.5, execution: str = "sparse",
                        batch_size: int | None = None, limit: int | None = None,
                        fused: bool = True, channels_last: bool = True, device: str = "auto",
                        seed: int = 0, precision: str = "fp32",
                        calibration_images: int = 512) -> dict:
    """Evaluate a checkpoint on its data set's validation split; returns plain data.

    ``precision="int8"`` calibrates on ``calibration_images`` un-augmented training images.
    """
    check_rate(threshold, "--threshold")
    if calibration_images < 1:
        raise ValueError(f"--calibration-images must be >= 1, got {calibration_images}")
    dev = resolve_device(device)
    model = load_model(path, dev)
    config, info = trained_config(model), model.pretrained_cfg
    int8 = precision == "int8"
    data = build_configured_data(config.data, data_dir, device=dev, channels_last=channels_last,
                                 val_batch_size=batch_size or config.data.val_batch_size,
                                 limit_val=limit, augment=False,
                                 limit_train=calibration_images if int8 else 1,
                                 batch_size=min(calibration_images, config.data.batch_size))
    generator = torch.Generator(device=dev).manual_seed(seed) if mode == "stochastic" else None
    calibration = (x for x, _ in data.train.iter_from(0)) if int8 else None
    predictor = Predictor(model, mode=mode, threshold=threshold, execution=execution,
                          fused=fused, channels_last=channels_last, generator=generator,
                          precision=precision, calibration=calibration)
    profile = predictor.profile(info["input_size"], info["input_size"])
    summary, _ = evaluate(predictor.forward, data.val.iter_from(0), profile,
                          gates_evaluated=evaluates_gates(mode), total=len(data.val))
    return {"checkpoint": str(path), "model": config.model.name, "data": config.data.name,
            "mode": mode, "threshold": threshold, "execution": execution, "fused": fused,
            "precision": precision, **({"calibration_images": calibration_images} if int8 else {}),
            "macs_dense": profile.dense, "gated_blocks": sum(getattr(model, "gated", ())),
            **summary, "classes": info["classes"]}


def format_eval(r: dict) -> str:
    """A readable report of :func:`evaluate_checkpoint`."""
    lines = [
        f"{r['model']} on {r['data']} ({r['images']} images), {r['mode']} "
        f"T={r['threshold']}, {r['execution']} execution",
        f"top-1 error {100 * r['top1_error']:.2f}%   top-5 error {100 * r['top5_error']:.2f}%",
        f"MACs/image {r['macs_mean'] / 1e6:.2f}M +- {r['macs_std'] / 1e6:.2f}M "
        f"({100 * r['mac_ratio']:.1f}% of dense {r['macs_dense'] / 1e6:.2f}M)",
        f"executed blocks {r['executed_blocks_mean']:.2f} +- {r['executed_blocks_std']:.2f}   "
        f"{r['images_per_s']:.0f} images/s",
        "layer rates: " + " ".join(f"{v:.2f}" for v in r["layer_rates"]),
    ]
    return "\n".join(lines)


def bench_checkpoint(path: str, *, data_dir: str | None = None, images: int = 256,
                     batch_sizes: Sequence[int] = (1, 32, 256), reps: int = 7, warmup: int = 2,
                     threshold: float = 0.5, channels_last: bool = True,
                     threads: int | None = None, precision: str = "fp32",
                     calibration_images: int = 512,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Time a checkpoint's sparse inference on the first ``images`` validation images against
    its dense form (:func:`aignet.engine.bench.benchmark_model`); returns plain data.

    ``precision="int8"`` calibrates on ``calibration_images`` un-augmented training images.
    """
    check_rate(threshold, "--threshold")
    if images < max(batch_sizes):
        raise ValueError(f"--images {images} is smaller than the largest batch size "
                         f"{max(batch_sizes)}; time at least one full batch")
    model = load_model(path)
    int8 = precision == "int8"
    data = build_configured_data(trained_config(model).data, data_dir, limit_val=images,
                                 val_batch_size=images, augment=False,
                                 limit_train=calibration_images if int8 else 1,
                                 batch_size=calibration_images if int8 else None)
    x, _ = next(data.val.iter_from(0))
    calibration = next(data.train.iter_from(0))[0] if int8 else None
    result = benchmark_model(model, x, batch_sizes, reps, warmup, threshold=threshold,
                             channels_last=channels_last, images_per_run=images,
                             threads=threads, precision=precision, calibration=calibration,
                             progress=progress)
    result["config"] |= {"checkpoint": str(path), "data": model.pretrained_cfg["data"]}
    return result


def recalibrate_checkpoint(path: str, out: str, *, data_dir: str | None = None,
                           images: int = 10000, executed_only: bool = True,
                           threshold: float = 0.5, batch_size: int = 250,
                           device: str = "auto") -> dict:
    """Re-estimate a checkpoint's BatchNorm statistics (see :mod:`aignet.engine.recalibrate`) on
    ``images`` un-augmented training images and write the result as a new checkpoint."""
    if Path(out).exists():
        raise FileExistsError(f"{out} exists; choose a new --out (nothing was overwritten)")
    if images < 1:
        raise ValueError(f"--images must be >= 1, got {images}")
    check_rate(threshold, "--threshold")
    dev = resolve_device(device)
    model = load_model(path, dev)
    config = trained_config(model)
    set_gate_mode(model, inference="deterministic", threshold=threshold)
    data = build_configured_data(config.data, data_dir, batch_size, device=dev, augment=False,
                                 limit_train=images, limit_val=1)
    seen = recalibrate_bn(model, data.train.iter_from(0), executed_only=executed_only)
    ckpt = load_checkpoint(path)
    ckpt["model"] = model.state_dict()
    ckpt["recalibrated"] = {"images": seen, "executed_only": executed_only,
                            "threshold": threshold, "source": str(path)}
    save_atomic(ckpt, out)
    return ckpt["recalibrated"] | {"out": str(out)}
