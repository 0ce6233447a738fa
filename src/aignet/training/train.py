"""The training loop: ``aignet train CONFIG --out DIR`` (also under torchrun for DDP).

Read top to bottom: :func:`train` sets everything up and runs epochs; :func:`train_one_epoch`
is the optimisation loop; checkpoints are written atomically to ``DIR/last.pt`` (and
``DIR/best.pt``) and resume exactly, mid-epoch included.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from aignet.data import Data
from aignet.engine.flops import profile_macs
from aignet.models.pretrained import shipped_entry
from aignet.models.resnet_weights import GATE_KEY, load_resnet_weights
from aignet.nn.gates import DEFAULT_INIT_RATE, evaluates_gates, set_gate_mode
from aignet.nn.losses import AIGLoss, annealed_targets
from aignet.training import distributed
from aignet.training.checkpoint import (
    CHECKPOINT_FORMAT,
    RUN_FILES,
    build_model,
    load_checkpoint,
    load_model,
    load_safe,
    save_atomic,
)
from aignet.training.config import Config, build_configured_data
from aignet.training.evaluate import evaluate, topk_correct
from aignet.training.optim import build_optimizer, build_scheduler
from aignet.training.progress import Progress
from aignet.training.tensorboard import TensorBoardLog


@dataclass
class TrainState:
    """Where the run is: completed epochs, steps into the current epoch, best error so far."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_top1_error: float = math.inf


@dataclass
class Run:
    """Everything one training run holds (a namespace, to keep signatures short)."""

    config: Config
    out: Path
    info: distributed.DistInfo
    data: Data
    model: nn.Module  # unwrapped
    ddp: nn.Module  # DDP wrapper, or the model itself
    loss_fn: AIGLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    state: TrainState
    log: list
    teacher: nn.Module | None = None
    tensorboard: TensorBoardLog | None = None


def init_weights(model: nn.Module, source: str) -> list[str]:
    """Load ResNet weights into ``model`` from an aignet checkpoint, a plain state_dict or
    shipped weights (``MODEL/TAG``).

    A gated source initialises the gates of a gated model too (fine-tuning an AIG model); the
    gates of a dense source, or those a dense model lacks, are left out.

    Returns:
        The keys left at initialisation (the gates').
    """
    if shipped_entry(source):
        state = load_model(source).state_dict()
    else:
        loaded = load_safe(source)
        state = loaded["model"] if isinstance(loaded, dict) and "format" in loaded else loaded
    if not isinstance(state, dict):
        raise ValueError(f"model.init_from: {source} holds no state_dict")
    own = model.state_dict()
    # Keys the source has and we lack are refused; gate keys we have and it lacks stay as built.
    return load_resnet_weights(model, {k: v for k, v in state.items()
                                       if GATE_KEY not in k or k in own})


def load_teacher(source: str, device: torch.device, channels_last: bool) -> nn.Module:
    """A trained aignet model (checkpoint or ``MODEL/TAG``), frozen in eval mode, whose logits
    the student learns to match."""
    teacher = load_model(source, device).requires_grad_(False)
    return teacher.to(memory_format=torch.channels_last) if channels_last else teacher


def current_targets(run: Run, epoch: float) -> Tensor | None:
    """The target rates at a (fractional) epoch of a target-rate warm-up; None: the final."""
    warmup = run.config.loss.target_warmup_epochs
    if not warmup or epoch >= warmup:
        return None
    start = run.config.model.kwargs.get("gate_init_rate", DEFAULT_INIT_RATE)
    return annealed_targets(run.loss_fn.targets, start, epoch / warmup)


def autocast(config: Config, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast as configured (fp16 only on GPUs)."""
    if config.train.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if config.train.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def setup_run(config: Config, out: Path, resume: bool) -> Run:
    """Data, model, optimiser, schedule and (when resuming) the restored state."""
    info = distributed.setup(config.train.device)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed + info.rank)
    if config.train.amp == "fp16" and info.device.type != "cuda":
        raise ValueError("train.amp=fp16 needs a GPU; use bf16 on CPU")
    d = config.data
    data = build_configured_data(d, augment=d.augment, seed=config.train.seed, rank=info.rank,
                                 world=info.world, device=info.device,
                                 channels_last=config.train.channels_last,
                                 limit_train=d.limit_train, limit_val=d.limit_val)
    if len(data.train) == 0:
        raise ValueError(f"{data.info.train_size} training images make no batch of "
                         f"{d.batch_size}; lower data.batch_size")
    model = build_model(config, data.info.num_classes, data.info.in_chans)
    if config.model.init_from and not resume:
        init_weights(model, config.model.init_from)
    model = model.to(info.device)
    if config.train.freeze_network:
        freeze_network(model)
    set_gate_mode(model, train=config.loss.gate_mode, tau=config.loss.tau,
                  inference=config.train.eval_mode, threshold=config.train.eval_threshold)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if info.enabled and config.train.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = model
    if info.enabled:
        ddp = DistributedDataParallel(model, device_ids=[info.device.index]
                                      if info.device.type == "cuda" else None)
    if config.train.compile:
        ddp = torch.compile(ddp)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, len(data.train), config.train.epochs)
    loss_fn = AIGLoss(model.target_rates, config.loss.target_weight,
                      config.loss.label_smoothing, config.loss.distill_weight,
                      config.loss.distill_temperature).to(info.device)
    scaler = torch.amp.GradScaler("cuda") if config.train.amp == "fp16" else None
    teacher = None
    if config.loss.distill_from:
        teacher = load_teacher(config.loss.distill_from, info.device, config.train.channels_last)
    run = Run(config, out, info, data, model, ddp, loss_fn, optimizer, scheduler, scaler,
              TrainState(), [], teacher)
    if resume:
        restore(run, out / "last.pt")
    if config.train.tensorboard and info.is_main:
        run.tensorboard = TensorBoardLog(out)
    return run


def freeze_network(model: nn.Module) -> None:
    """Leave only the gates' parameters trainable (``train.freeze_network``)."""
    is_gate = {name: GATE_KEY in f".{name}" for name, _ in model.named_parameters()}
    if not any(is_gate.values()):
        raise ValueError("train.freeze_network trains only the gates, and this model has none; "
                         "use an AIG model (aig_*) or drop the setting")
    for name, param in model.named_parameters():
        param.requires_grad_(is_gate[name])


def set_train_mode(run: Run) -> None:
    """Training mode, but a frozen network's BatchNorms outside the gates stay in eval mode."""
    run.ddp.train()
    if run.config.train.freeze_network:
        for name, module in run.model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and GATE_KEY not in f".{name}.":
                module.eval()


def train(config: Config, out: str | Path, resume: bool = False,
          overwrite: bool = False) -> dict:
    """Train as configured, writing ``last.pt``, ``best.pt``, ``log.jsonl``, ``config.yaml``.

    A folder that already holds a run is refused unless ``resume`` (continue it) or
    ``overwrite`` (move its files aside into ``OUT/replaced-<time>/``, never deleting them).

    Returns:
        The last epoch's log entry.
    """
    out = Path(out)
    prepare_run_dir(out, resume, overwrite)
    run = setup_run(config, out, resume)
    try:
        if run.info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
            _rewrite_log(run)
        profile = profile_macs(run.model, run.data.info.input_size)
        entry: dict = run.log[-1] if run.log else {}
        for epoch in range(run.state.epoch, config.train.epochs):
            run.data.train.set_epoch(epoch)
            start = time.perf_counter()
            stats = train_one_epoch(run, epoch)
            entry = {"epoch": epoch + 1, "step": run.state.global_step, **stats,
                     "epoch_time_s": round(time.perf_counter() - start, 2)}
            skipped = getattr(run.data.train, "skipped", 0)
            if skipped:  # undecodable images of an image folder, since the run (re)started
                entry["skipped_images"] = skipped
            last = epoch + 1 == config.train.epochs
            if (epoch + 1) % config.train.eval_every == 0 or last:
                entry.update(validate(run, profile))
            if last:  # proof that every rank ended with the same weights
                entry["rank_checksums"] = distributed.gather_objects(_checksum(run.model),
                                                                     run.info)
            finish_epoch(run, entry)
        distributed.barrier(run.info)
        return entry
    finally:
        distributed.cleanup(run.info)


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Check ``out`` before anything runs: never replace a run by accident.

    A fresh run needs a folder without run files (or ``overwrite``, which moves them aside);
    ``resume`` needs ``last.pt``. Temporary files of an interrupted save are removed.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the run")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if not (out / "last.pt").is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {out / 'last.pt'}; drop "
                                    "--resume to start a new run there")
    elif existing and not overwrite:
        raise FileExistsError(f"{out} already holds a run ({', '.join(existing)}); continue it "
                              "with --resume, choose a fresh --out, or pass --overwrite to move "
                              "the old files aside")
    if os.environ.get("RANK", "0") != "0":  # files are rank 0's
        return
    for stale in out.glob(".*.tmp") if out.is_dir() else ():
        stale.unlink()
        print(f"note: removed {stale.name}, left by an interrupted save", file=sys.stderr)
    if existing and overwrite and not resume:
        aside = out / time.strftime("replaced-%Y%m%d-%H%M%S")
        aside.mkdir()
        for name in existing:
            (out / name).rename(aside / name)
        print(f"note: moved the previous run's files to {aside}", file=sys.stderr)


def train_one_epoch(run: Run, epoch: int) -> dict:
    """One pass over the training data, from ``run.state.step_in_epoch``."""
    cfg, model = run.config, run.ddp
    set_train_mode(run)
    loader = run.data.train
    totals = torch.zeros(7, dtype=torch.float64)  # images, loss, ce, tr, top1, top5, kd
    rate_sum = torch.zeros(run.model.num_blocks, dtype=torch.float64)
    steps = 0
    progress = Progress(len(loader), f"epoch {epoch + 1}/{cfg.train.epochs}",
                        enabled=run.info.is_main, start=run.state.step_in_epoch)
    for step, (images, labels) in enumerate(loader.iter_from(run.state.step_in_epoch),
                                            start=run.state.step_in_epoch):
        with autocast(cfg, run.info.device):
            out = model(images)
            teacher_logits = None
            if run.teacher is not None:
                with torch.no_grad():
                    teacher_logits = run.teacher(images).logits
        rates = distributed.global_execution_rates(out.gates, run.info)
        targets = current_targets(run, epoch + step / len(loader))
        terms = run.loss_fn(out.logits, out.gates, labels, rates=rates,
                            teacher_logits=teacher_logits, targets=targets)
        loss = terms.total.item()
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss} at epoch {epoch + 1} step "
                                     f"{step + 1}; lower optim.lr or disable train.amp")
        backward_step(run, terms.total)
        hits = topk_correct(out.logits.detach(), labels)
        n = len(labels)
        kd = 0.0 if terms.distillation is None else terms.distillation.item()
        totals += torch.tensor([n, loss * n, terms.classification.item() * n,
                                terms.target_rate.item() * n, *hits, kd * n],
                               dtype=torch.float64)
        rate_sum += rates.detach().double().cpu()  # global-batch rates, equal on every rank
        steps += 1
        run.state.step_in_epoch = step + 1
        run.state.global_step += 1
        progress.update(step + 1, loss=totals[1] / totals[0], acc=totals[4] / totals[0],
                        exec=float(rates.detach().mean()))
        if cfg.train.save_every_steps and run.state.global_step % cfg.train.save_every_steps == 0:
            save_checkpoint(run, run.out / "last.pt")
    return _train_stats(run, totals, rate_sum / max(steps, 1))


def backward_step(run: Run, loss: Tensor) -> None:
    """Backward, optimiser and schedule step (with fp16 grad scaling when enabled)."""
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    run.scheduler.step()


def _train_stats(run: Run, totals: Tensor, rates: Tensor) -> dict:
    totals = distributed.sum_across(totals.to(run.info.device), run.info).cpu()
    n = totals[0].item()
    return {
        "train_loss": totals[1].item() / n, "train_ce": totals[2].item() / n,
        "train_target_loss": totals[3].item() / n,
        "train_top1_error": 1 - totals[4].item() / n, "train_top5_error": 1 - totals[5].item() / n,
        **({"train_distill": totals[6].item() / n} if run.teacher is not None else {}),
        "train_layer_rates": [round(r, 5) for r in rates.tolist()],
        "lr": [g["lr"] for g in run.optimizer.param_groups],
    }


def validate(run: Run, profile) -> dict:
    """Evaluate the model on the validation data in the configured inference mode."""
    run.model.eval()
    mode = run.config.train.eval_mode
    summary, _ = evaluate(run.model, run.data.val.iter_from(0), profile,
                          gates_evaluated=evaluates_gates(mode), info=run.info,
                          total=len(run.data.val), label="validation")
    set_train_mode(run)
    return {"val_" + k: v for k, v in summary.items()}


def finish_epoch(run: Run, entry: dict) -> None:
    """Advance the state, write ``last.pt`` and (if better) ``best.pt``, log the epoch.

    Every rank calls this: saving gathers all ranks' RNG states (a collective); only rank 0
    writes files.
    """
    run.state.epoch = entry["epoch"]
    run.state.step_in_epoch = 0
    error = entry.get("val_top1_error", math.inf)
    is_best = error < run.state.best_top1_error
    run.state.best_top1_error = min(error, run.state.best_top1_error)
    run.log.append(entry)
    save_checkpoint(run, run.out / "last.pt")
    if is_best:
        save_checkpoint(run, run.out / "best.pt")
    if run.info.is_main:
        with open(run.out / "log.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        if run.tensorboard is not None:
            run.tensorboard.write(entry)
        print(_epoch_line(entry), flush=True)


def _epoch_line(e: dict) -> str:
    rates = e["train_layer_rates"]
    text = (f"epoch {e['epoch']}: loss {e['train_loss']:.4f} train top-1 err "
            f"{e['train_top1_error']:.4f} exec {sum(rates) / len(rates):.3f}")
    if "val_top1_error" in e:
        text += (f" | val top-1 err {e['val_top1_error']:.4f} MACs "
                 f"{e['val_macs_mean'] / 1e6:.1f}M ({e['val_mac_ratio']:.3f} of dense) "
                 f"blocks {e['val_executed_blocks_mean']:.1f}")
    if e.get("skipped_images"):
        text += f" | {e['skipped_images']} undecodable images skipped so far"
    return text + f" | {e['epoch_time_s']:.0f}s"


def save_checkpoint(run: Run, path: Path) -> None:
    """Atomically write model, optimiser, schedule, state, RNG states, config and log.

    Weights that are no longer finite are never written: the previous checkpoint stays.
    """
    bad = [k for k, v in run.model.state_dict().items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise FloatingPointError(
            f"non-finite weights ({bad[0]}) at step {run.state.global_step}; not saved, "
            f"{path} keeps the last good checkpoint; lower optim.lr or disable train.amp")
    rng = distributed.gather_objects(_rng_state(), run.info)
    if not run.info.is_main:
        return
    save_atomic({
        "format": CHECKPOINT_FORMAT,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "state": asdict(run.state),
        "rng": rng,
        "config": run.config.to_dict(),
        "data_info": asdict(run.data.info),
        "log": run.log,
    }, path)


def restore(run: Run, path: Path) -> None:
    """Load ``last.pt`` into the run (model, optimiser, schedule, state, RNG, log)."""
    ckpt = load_checkpoint(path)  # its existence was checked by prepare_run_dir
    check_resumable(ckpt["config"], run.config.to_dict(), path)
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.state = TrainState(**ckpt["state"])
    run.log = list(ckpt["log"])
    rng = ckpt["rng"]
    if len(rng) != run.info.world:
        raise ValueError(f"{path} was written by {len(rng)} processes; resume with the same "
                         f"number (got {run.info.world})")
    _set_rng_state(rng[run.info.rank])


# Settings a resumed run must share with the checkpoint: they change what the weights, the
# step counter or the batch order mean. Everything else may change (and is reported).
RESUME_FIXED = ("model.name", "model.target_rates", "model.kwargs", "data.name",
                "data.batch_size", "data.limit_train", "loss.gate_mode", "train.seed")


def _flat(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and key != "kwargs":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(saved: dict, current: dict, path: Path) -> None:
    """Refuse a resume whose config changes a :data:`RESUME_FIXED` setting; note the others."""
    old, new = _flat(saved), _flat(current)
    changed = [k for k in new if k in old and old[k] != new[k]]
    fixed = [k for k in changed if k in RESUME_FIXED]
    if fixed:
        k = fixed[0]
        raise ValueError(f"--resume: {k} is {new[k]!r} but {path} was trained with {old[k]!r}; "
                         f"resume with the same value or start a new run in a fresh --out")
    for k in changed:
        print(f"note: resuming with {k} changed from {old[k]!r} to {new[k]!r}", file=sys.stderr)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rewrite_log(run: Run) -> None:
    # On resume the log restarts from the checkpoint's copy: no duplicated or partial epochs.
    with open(run.out / "log.jsonl", "w") as f:
        for entry in run.log:
            f.write(json.dumps(entry) + "\n")


def _checksum(model: nn.Module) -> float:
    """A float fingerprint of all parameters (equal on every rank when DDP is in sync)."""
    with torch.no_grad():
        return float(sum(p.double().sum() + p.double().abs().sum() for p in model.parameters()))
