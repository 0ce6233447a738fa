"""Typed training configuration: defaults are the papers' CIFAR recipe; YAML files and
``--set section.key=value`` overrides on top; validated before anything runs.

Types are checked and converted by pydantic dataclasses (validate on assignment): ``1e-3``,
which YAML reads as a string, becomes a float; ``optim.lr: fast`` is refused with the key named.
Ranges and choices are checked by :func:`validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from aignet.data import DATASETS, Data, FolderOptions, build_data
from aignet.nn.gates import INFERENCE_MODES, TRAIN_MODES

SCHEDULES = ("step", "cosine")
# The recipes shipped inside the package (configs/ in a checkout links here).
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
AMP_MODES = ("none", "bf16", "fp16")
# Every section converts and checks the type of a value when it is assigned.
dataclass = pydantic_dataclass(config=ConfigDict(validate_assignment=True, extra="forbid"))


@dataclass
class ModelConfig:
    """Which network to build."""

    name: str = "aig_resnet110_cifar"
    # A number, a per-block list ("1,1,0.8,..." on the command line) or a preset "NAME:t";
    # None: the builder's own default (0.7 on CIFAR, aig50:0.6 for aig_resnet50, ...).
    target_rates: Any = None
    kwargs: dict = field(default_factory=dict)  # e.g. {shortcut: B, gate_hidden: 16}
    # Start from these ResNet weights (an aignet checkpoint or a torchvision-style state_dict);
    # gates keep their initialisation. Used on a fresh start only, not on --resume.
    init_from: str | None = None


@dataclass
class DataConfig:
    """Which data and how to batch it."""

    name: str = "cifar10"
    root: str | None = None
    batch_size: int = 256  # global, over all processes
    val_batch_size: int = 500
    augment: bool = True
    workers: int = 4
    strict: bool = False
    limit_train: int | None = None
    limit_val: int | None = None
    # Image folders: the side length images are trained at (None: the first image's size when
    # it is at most 64 pixels, decoded once into memory; else 224, decoded in workers), and the
    # fraction of train/ held out for validation when the folder has no val/.
    image_size: int | None = None
    val_fraction: float = 0.0


@dataclass
class OptimConfig:
    """SGD with two parameter groups (gates, the rest) and a per-step schedule."""

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    gate_lr_factor: float = 1.0
    schedule: str = "step"
    milestones: list = field(default_factory=lambda: [150, 250])  # epochs
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    min_lr: float = 0.0  # cosine floor


@dataclass
class LossConfig:
    """Cross-entropy + target_weight * target-rate loss, and the gates' training mode."""

    target_weight: float = 2.0  # lambda
    gate_mode: str = "hard"
    tau: float = 1.0
    label_smoothing: float = 0.0
    # Knowledge distillation from a trained teacher (an aignet checkpoint, e.g. the dense
    # ResNet the AIG model starts from): (1 - w) * CE + w * T^2 * KL at temperature T.
    distill_from: str | None = None
    distill_weight: float = 0.7
    distill_temperature: float = 2.0
    # Target-rate warm-up: over this many epochs the targets move linearly from the gates'
    # initial opening rate to their final values (0: the final targets from the start).
    target_warmup_epochs: float = 0.0


@dataclass
class TrainConfig:
    """Loop, precision, checkpointing and evaluation settings."""

    epochs: int = 350
    seed: int = 0
    device: str = "auto"  # auto: cuda when available
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    save_every_steps: int = 0  # also checkpoint mid-epoch every N steps (0: per epoch only)
    eval_every: int = 1  # epochs
    eval_mode: str = "deterministic"
    eval_threshold: float = 0.5
    threads: int | None = None
    # Train only the gates: the network's weights get no gradient and its BatchNorms keep their
    # running statistics (eval mode), as for gates added to a converged network.
    freeze_network: bool = False
    tensorboard: bool = False  # also log to OUT/tensorboard/ (the tensorboard extra)


@dataclass
class Config:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON/checkpoint friendly)."""
        return asdict(self)


def _merge(section: Any, values: dict, prefix: str) -> None:
    if not isinstance(values, dict):
        raise ValueError(f"config section {prefix or 'root'} must be a mapping, got {values!r}")
    names = [f.name for f in dataclasses.fields(section)]
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ValueError(f"unknown config key {prefix}{key}{hint}")
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, f"{prefix}{key}.")
            continue
        try:
            setattr(section, key, value)
        except ValidationError as err:
            problem = err.errors()[0]["msg"]
            raise ValueError(f"config key {prefix}{key}: {problem[0].lower()}{problem[1:]}, "
                             f"got {value!r}") from None


def from_dict(values: dict | None) -> Config:
    """A :class:`Config` from nested plain data (unknown keys are refused)."""
    config = Config()
    _merge(config, values or {}, "")
    return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=1`` -> (["train", "epochs"], 1); values are parsed as YAML scalars/lists."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        raise ValueError(f"cannot parse the value of override {text!r}") from None
    return key.strip().split("."), value


def _deep_merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_configured_data(d: DataConfig, root: str | None = None, batch_size: int | None = None,
                          **kwargs) -> Data:
    """:func:`aignet.data.build_data` for a config's data section; ``root`` and ``batch_size``
    override the section's, ``kwargs`` go to ``build_data`` (device, limits, seed, ...)."""
    options = dict(val_batch_size=d.val_batch_size, workers=d.workers, strict=d.strict,
                   folder=FolderOptions(d.image_size, d.val_fraction))
    return build_data(d.name, root or d.root, batch_size or d.batch_size, **{**options, **kwargs})


def find_recipe(path: str | Path) -> Path:
    """``path`` itself, or else a recipe of that name shipped with aignet (``RECIPES_DIR``)."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / path.name
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"config file not found: {path} (shipped recipes: "
                            f"{', '.join(sorted(p.name for p in RECIPES_DIR.glob('*.yaml')))})")


def read_recipe(path: str | Path, _seen: tuple = ()) -> dict:
    """A YAML recipe as nested dicts; a ``base: other.yaml`` (relative path) is merged under it.

    A bare file name that does not exist here names a shipped recipe (``aignet/recipes/``).
    """
    path = find_recipe(path)
    if path.resolve() in _seen:
        raise ValueError(f"{path}: circular 'base:' chain")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of sections")
    base = values.pop("base", None)
    if base is None:
        return values
    return _deep_merge(read_recipe(path.parent / base, (*_seen, path.resolve())), values)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Read a YAML recipe (optional), apply ``--set`` overrides, validate.

    Args:
        path: YAML file with any of the sections model/data/optim/loss/train (and ``base:``).
        overrides: ``section.key=value`` strings applied in order.
    """
    values = read_recipe(path) if path is not None else {}
    for text in overrides:
        keys, value = parse_override(text)
        node = values
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value
    config = from_dict(values)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Refuse impossible settings with one clear message (model/data are checked when built)."""
    o, t, d, loss = config.optim, config.train, config.data, config.loss
    checks = [
        (o.lr > 0, f"optim.lr must be > 0, got {o.lr}"),
        (o.momentum >= 0, f"optim.momentum must be >= 0, got {o.momentum}"),
        (o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}"),
        (o.gate_lr_factor > 0, f"optim.gate_lr_factor must be > 0, got {o.gate_lr_factor}"),
        (o.schedule in SCHEDULES, f"unknown schedule {o.schedule!r}; choose one of {SCHEDULES}"),
        (o.warmup_epochs >= 0, f"optim.warmup_epochs must be >= 0, got {o.warmup_epochs}"),
        (0 < o.gamma <= 1, f"optim.gamma must be in (0, 1], got {o.gamma}"),
        (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
        (t.amp in AMP_MODES, f"unknown train.amp {t.amp!r}; choose one of {AMP_MODES}"),
        (t.eval_mode in INFERENCE_MODES,
         f"unknown train.eval_mode {t.eval_mode!r}; choose one of {INFERENCE_MODES}"),
        (0 <= t.eval_threshold <= 1, f"train.eval_threshold must be in [0, 1], got "
                                     f"{t.eval_threshold}"),
        (t.save_every_steps >= 0, "train.save_every_steps must be >= 0"),
        (d.batch_size >= 1 and d.val_batch_size >= 1, "data batch sizes must be >= 1"),
        (d.limit_train is None or d.limit_train >= 1,
         f"data.limit_train must be >= 1 (or null: all images), got {d.limit_train}"),
        (d.limit_val is None or d.limit_val >= 1,
         f"data.limit_val must be >= 1 (or null: all images), got {d.limit_val}"),
        (d.workers >= 0, f"data.workers must be >= 0, got {d.workers}"),
        (d.image_size is None or d.image_size >= 8,
         f"data.image_size must be >= 8 pixels (or null: automatic), got {d.image_size}"),
        (0 <= d.val_fraction < 1, f"data.val_fraction must be in [0, 1), got {d.val_fraction}"),
        (d.name == "imagefolder" or (d.image_size is None and d.val_fraction == 0),
         f"data.image_size and data.val_fraction apply to image folders, not {d.name}"),
        (t.eval_every >= 1, f"train.eval_every must be >= 1, got {t.eval_every}"),
        (t.threads is None or t.threads >= 1,
         f"train.threads must be >= 1 (or null: torch's default), got {t.threads}"),
        (0 <= loss.label_smoothing < 1,
         f"loss.label_smoothing must be in [0, 1), got {loss.label_smoothing}"),
        (o.min_lr >= 0, f"optim.min_lr must be >= 0, got {o.min_lr}"),
        (d.name in DATASETS, f"unknown data set {d.name!r}; choose one of {', '.join(DATASETS)}"),
        (loss.gate_mode in TRAIN_MODES,
         f"unknown loss.gate_mode {loss.gate_mode!r}; choose one of {TRAIN_MODES}"),
        (loss.tau > 0, f"loss.tau must be > 0, got {loss.tau}"),
        (loss.target_weight >= 0, f"loss.target_weight must be >= 0, got {loss.target_weight}"),
        (0 <= loss.distill_weight <= 1,
         f"loss.distill_weight must be in [0, 1], got {loss.distill_weight}"),
        (loss.distill_temperature > 0,
         f"loss.distill_temperature must be > 0, got {loss.distill_temperature}"),
        (loss.target_warmup_epochs >= 0,
         f"loss.target_warmup_epochs must be >= 0, got {loss.target_warmup_epochs}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    if o.schedule == "step" and any(not isinstance(m, int | float) or m <= 0
                                    for m in o.milestones):
        raise ValueError(f"optim.milestones must be positive epochs, got {o.milestones}")
