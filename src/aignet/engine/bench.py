"""Inference speed: dense ResNet vs masked (original code) vs sparse (aignet) execution.

The gated model's gates are calibrated so that a chosen fraction of images opens each gate (the
bias of each gate is set, in execution order, to the matching quantile of its margins on a
calibration batch; the decision still depends on the image). The dense model is the plain
ResNet of the same depth with the same weights. All three are fused (BatchNorm folded) and timed
in one process, interleaved, after warm-up; the median over repetitions is reported.

:func:`benchmark_model` applies the same protocol to a trained model on real images: its own
decisions set the rates, and its dense counterpart is the same fused network with the gates
removed.

Per row: ``time_ratio`` = time / dense time; ``ideal_ratio`` = (dense time - sum over blocks of
measured block time * (1 - execution rate)) / dense time, the time the executed blocks alone
would take; ``overhead`` = time_ratio / ideal_ratio (1.0 is the limit) and
``measured_over_ideal`` its inverse; ``mac_ratio`` = MACs / dense MACs and
``measured_over_mac_ideal`` = mac_ratio / time_ratio, the same against the MAC count (which
takes every MAC to cost the same time, whatever layer it is in).
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from aignet.engine.flops import profile_macs
from aignet.engine.fuse import fuse
from aignet.engine.quantize import check_precision, input_dtype, to_precision
from aignet.engine.record import ExecutionRecord
from aignet.models.registry import create_model
from aignet.models.resnet_weights import GATE_KEY
from aignet.nn.blocks import remove_gates, set_execution
from aignet.nn.gates import EXECUTE, Gate, set_gate_mode

# Images per timed run for small batches: batch 1 is averaged over this many different images.
MIN_IMAGES_PER_RUN = 64
CALIBRATION_IMAGES = 512
# Bias that opens (or closes) a gate whatever its input.
_ALWAYS = 1e30


def dense_counterpart(name: str) -> str:
    """Registry name of the plain ResNet with the same architecture as ``name``."""
    if not name.startswith("aig_"):
        raise ValueError(f"{name} is not a gated model; benchmark an aig_* model")
    return name[len("aig_"):]


@torch.no_grad()
def calibrate_gates(model: nn.Module, images: Tensor, rate: float, seed: int = 0) -> None:
    """Make each gate open for a fraction ``rate`` of ``images`` (deterministic, T = 0.5).

    The last gate layer gets random weights (std 1) so decisions differ per image, then its
    execute bias is set to the (1 - rate) quantile of the margins it sees in execution order.
    """
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    set_gate_mode(model, inference="deterministic", threshold=0.5)
    h = model.forward_stem(images)
    for block in model.blocks():
        gate = block.gate
        if isinstance(gate, Gate):
            weight = torch.randn(gate.fc2.weight.shape, generator=generator)
            gate.fc2.weight.copy_(weight.to(gate.fc2.weight))
            gate.fc2.bias.zero_()
            margins = gate.margin(h).sort().values
            cut = min(max(round((1.0 - rate) * len(margins)), 0), len(margins) - 1)
            below = margins[cut - 1] if cut > 0 else margins[0] - 1.0
            # Midway between the last closed and the first open margin: no ties at the threshold.
            gate.fc2.bias[EXECUTE] = -(below + margins[cut]) / 2
            if rate >= 1.0 or rate <= 0.0:  # margins can exceed any finite bias
                gate.fc2.bias[EXECUTE] = math.copysign(_ALWAYS, rate - 0.5)
            gate.running_rate.fill_(rate)
        h, _ = block(h)


def _warm_bn(model: nn.Module, images: Tensor, steps: int = 3) -> None:
    # Realistic BatchNorm statistics, so activations keep a sane scale through 100+ layers.
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(images)
    model.eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _block_profile(model: nn.Module, batches: Sequence[Tensor], device: torch.device
                   ) -> tuple[float, list[float]]:
    """One dense pass timed block by block: (total seconds, seconds per block)."""
    per_block = [0.0] * model.num_blocks
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            h = model.forward_stem(batch)
            for i, block in enumerate(model.blocks()):
                _sync(device)
                t0 = time.perf_counter()
                h, _ = block(h)  # an ungated block: its dense forward (and any cast hook)
                _sync(device)
                per_block[i] += time.perf_counter() - t0
            model.forward_head(h)
    _sync(device)
    return time.perf_counter() - start, per_block


def _loop(model: nn.Module, batches: Sequence[Tensor]) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            for b in batches:
                model(b)
    return run


def _measure(runners: dict[str, nn.Module], batches: Sequence[Tensor], rates: Sequence[float],
             reps: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Interleaved repetitions; per repetition the ratios to the dense run of that repetition.

    Returns medians of: dense seconds, each other runner's time ratio, the ideal ratio.
    """
    fns = {k: _loop(m, batches) for k, m in runners.items()}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in [*fns, "ideal"]}
    names = list(fns) + ["blocks"]
    for rep in range(reps):
        shift = rep % len(names)
        times = {}
        for name in names[shift:] + names[:shift]:
            if name == "blocks":
                total, per_block = _block_profile(runners["dense"], batches, device)
                saved = sum(t * (1.0 - r) for t, r in zip(per_block, rates, strict=True))
                samples["ideal"].append((total - saved) / total)
            else:
                times[name] = _timed(fns[name], device)
        samples["dense"].append(times["dense"])
        for name in fns.keys() - {"dense"}:
            samples[name].append(times[name] / times["dense"])
    return {k: statistics.median(v) for k, v in samples.items()}


def synthetic_models(model_name: str, rate: float, seed: int = 0,
                     device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module, Tensor]:
    """The synthetic benchmark's pair: gated model ``model_name`` with warmed BatchNorm and gates
    calibrated to open for ``rate`` of the images, its dense counterpart with the same weights,
    and the random calibration images (eval mode, not fused)."""
    torch.manual_seed(seed)
    gated = create_model(model_name).to(device)
    size = gated.default_input_size
    calib = torch.randn(CALIBRATION_IMAGES, gated.in_chans, size, size, device=device)
    _warm_bn(gated, calib[:128])
    calibrate_gates(gated, calib, rate, seed)
    dense = create_model(dense_counterpart(model_name)).to(device)
    dense.load_state_dict({k: v for k, v in gated.state_dict().items() if GATE_KEY not in k})
    return gated, dense.eval(), calib


def benchmark(model_name: str = "aig_resnet110_cifar", rate: float = 0.6,
              batch_sizes: Sequence[int] = (1, 32, 256), reps: int = 7, warmup: int = 2,
              device: str = "cpu", threads: int | None = None, channels_last: bool = False,
              seed: int = 0, progress: Callable[[str], None] | None = None,
              precision: str = "fp32") -> dict:
    """Time dense, masked and sparse inference; see the module docstring for the fields.

    ``precision`` (``fp32``, ``bf16``, ``int8``) applies to all three models alike; int8 is
    calibrated on the calibration images.

    Returns:
        ``{"config": {...}, "rows": [...]}`` with one row per (batch size, execution).
    """
    check_precision(precision)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    gated, dense, calib = synthetic_models(model_name, rate, seed, dev)
    size = gated.default_input_size
    profile = profile_macs(gated)
    runners = {"dense": fuse(dense, channels_last), "masked": fuse(gated, channels_last),
               "sparse": fuse(gated, channels_last)}
    set_execution(runners["masked"], "masked")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for runner in runners.values():
        to_precision(runner, precision, [calib[:256].contiguous(memory_format=fmt)])
    dtype = input_dtype(runners["sparse"])
    rows = []
    for batch in batch_sizes:
        if progress:
            progress(f"batch {batch}: timing dense / masked / sparse")
        rows += _rows_for_batch(runners, profile, batch, gated.in_chans, size, dev, reps, warmup,
                                fmt, dtype)
    return {"config": _config(model_name, reps, warmup, dev, channels_last)
            | {"dense_model": dense_counterpart(model_name), "target_execution_rate": rate,
               "seed": seed, "precision": precision}, "rows": rows}


def _rows_for_batch(runners: dict[str, nn.Module], profile, batch: int, in_chans: int, size: int,
                    dev: torch.device, reps: int, warmup: int, fmt: torch.memory_format,
                    dtype: torch.dtype) -> list[dict]:
    count = max(1, MIN_IMAGES_PER_RUN // batch)
    batches = [torch.randn(batch, in_chans, size, size, device=dev, dtype=dtype)
               .contiguous(memory_format=fmt) for _ in range(count)]
    return _rows(runners, profile, batches, reps, warmup, dev)


def _rows(runners: dict[str, nn.Module], profile, batches: Sequence[Tensor], reps: int,
          warmup: int, dev: torch.device) -> list[dict]:
    """One row per runner other than ``dense`` (``masked`` and/or ``sparse``) for ``batches``."""
    with torch.inference_mode():
        gates = torch.cat([runners["sparse"](b).gates for b in batches])
    record = ExecutionRecord.from_gates(gates, profile)
    measured = _measure(runners, batches, record.layer_rates.tolist(), reps, warmup, dev)
    images = len(gates)
    rows = []
    for execution in [name for name in runners if name != "dense"]:
        macs = profile.dense + profile.gate_total if execution == "masked" else \
            float(record.macs.mean())
        time_ratio = measured[execution]
        rows.append({
            "batch_size": len(batches[0]), "execution": execution, "images": images,
            "execution_rate": round(record.gated_rate, 4),
            "mac_ratio": round(macs / profile.dense, 4),
            "ideal_ratio": round(measured["ideal"], 4), "time_ratio": round(time_ratio, 4),
            "overhead": round(time_ratio / measured["ideal"], 4),
            "measured_over_ideal": round(measured["ideal"] / time_ratio, 4),
            "measured_over_mac_ideal": round(macs / profile.dense / time_ratio, 4),
            "dense_ms_per_image": round(1e3 * measured["dense"] / images, 4),
            "ms_per_image": round(1e3 * measured["dense"] * time_ratio / images, 4),
            "speedup": round(1.0 / time_ratio, 4),
        })
    return rows


@torch.no_grad()
def benchmark_model(model: nn.Module, images: Tensor, batch_sizes: Sequence[int] = (1, 32, 256),
                    reps: int = 7, warmup: int = 2, *, threshold: float = 0.5,
                    channels_last: bool = True, images_per_run: int = 256,
                    threads: int | None = None, precision: str = "fp32",
                    calibration: Tensor | None = None,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Time a trained gated model's own sparse inference on real images against its dense form.

    The same protocol as :func:`benchmark` (fused models, interleaved, block-time ideal), with
    the model's deterministic decisions at ``threshold`` instead of calibrated gates, and as
    dense counterpart the same fused network without its gates. Each batch size times the first
    ``images_per_run`` of ``images`` (normalised, on the model's device) in batches of that size,
    so every batch size sees the same images and the rates are theirs. ``precision`` applies to
    both runners alike (int8 is calibrated on ``calibration``, normalised training images).

    Returns:
        ``{"config": {...}, "rows": [...]}``, one ``sparse`` row per batch size.
    """
    if not any(getattr(model, "gated", ())):
        raise ValueError("the model has no gates; benchmark a gated (aig_*) model")
    check_precision(precision)
    if threads:
        torch.set_num_threads(threads)
    dev = next(model.parameters()).device
    runners = {"dense": remove_gates(fuse(model, channels_last)),
               "sparse": set_gate_mode(fuse(model, channels_last), inference="deterministic",
                                       threshold=threshold)}
    profile = profile_macs(model, tuple(images.shape[-2:]))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for runner in runners.values():
        to_precision(runner, precision, None if calibration is None else
                     [calibration.to(dev).contiguous(memory_format=fmt)])
    dtype = input_dtype(runners["sparse"])
    rows = []
    for batch in batch_sizes:
        count = max(1, images_per_run // batch)
        if len(images) < batch * count:
            raise ValueError(f"batch size {batch} needs {batch * count} images, got "
                             f"{len(images)}")
        if progress:
            progress(f"batch {batch}: timing dense / sparse on {batch * count} images")
        x = images[:batch * count].to(dev, dtype).contiguous(memory_format=fmt)
        rows += _rows(runners, profile, list(x.split(batch)), reps, warmup, dev)
    config = _config(getattr(model, "name", type(model).__name__), reps, warmup, dev,
                     channels_last)
    return {"config": config | {"dense_model": "the same network without gates",
                                "threshold": threshold, "precision": precision}, "rows": rows}


def _config(model_name: str, reps: int, warmup: int, dev: torch.device, channels_last: bool
            ) -> dict:
    info = {"model": model_name, "reps": reps, "warmup": warmup, "device": str(dev),
            "threads": torch.get_num_threads(), "channels_last": channels_last,
            "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": cpu_name()}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def cpu_name() -> str:
    """The CPU model named in /proc/cpuinfo (benchmarks record where they ran)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_benchmark(path: str | Path, rows: list, threads: int, env: Sequence[str] = (),
                    **extra) -> dict:
    """Print and write the JSON document of a script under ``benchmarks/``: where it ran
    (torch, threads, processor, ``extra``), its rows and the command that made it (``env``:
    environment settings written before it)."""
    command = [*env, "python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]
    result = {"torch": torch.__version__, "threads": threads, "processor": cpu_name(), **extra,
              "rows": rows, "command": " ".join(command)}
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def format_rows(result: dict) -> str:
    """A readable table of :func:`benchmark`'s rows."""
    cfg = result["config"]
    lines = [f"{cfg['model']} vs {cfg['dense_model']} on {cfg['device']} "
             f"({cfg['threads']} threads, channels_last={cfg['channels_last']})",
             f"{'batch':>6} {'execution':>9} {'rate':>6} {'MACs':>6} {'ideal':>6} {'time':>6} "
             f"{'overhead':>8} {'dense ms/img':>12} {'ms/img':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['batch_size']:>6} {r['execution']:>9} {r['execution_rate']:>6.3f} "
                     f"{r['mac_ratio']:>6.3f} {r['ideal_ratio']:>6.3f} {r['time_ratio']:>6.3f} "
                     f"{r['overhead']:>8.3f} {r['dense_ms_per_image']:>12.3f} "
                     f"{r['ms_per_image']:>8.3f}")
    return "\n".join(lines)
