"""``aignet demo``: train an AIG ResNet and its dense baseline, evaluate both, analyse, report.

The default is the fast CPU recipe on Fashion-MNIST (about 10 minutes on 2 cores); ``--data
cifar10 --data-dir PATH`` runs the short CIFAR-10 schedule instead. The last line printed is one
JSON object with the headline numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from aignet.analysis.analyze import analyze, measure_speedup
from aignet.analysis.evaluation import evaluate_checkpoint
from aignet.training.checkpoint import load_checkpoint, load_model, trained_config
from aignet.training.config import RECIPES_DIR, build_configured_data, load_config
from aignet.training.train import train

RECIPES = {
    # (AIG recipe, dense recipe, whether AIG starts from the trained dense weights)
    "fashion-mnist": ("fashion_mnist_aig20_finetune.yaml", "fashion_mnist_resnet20_fast.yaml",
                      True),
    "cifar10": ("cifar10_short.yaml", "cifar10_short.yaml", False),
}
# The CIFAR-10 demo compares AIG-ResNet-32 with the plain ResNet-32 on the short schedule.
CIFAR_BASELINE = ["model.name=resnet32_cifar", "model.target_rates=null"]


def _train_once(recipe: Path, overrides: list[str], out: Path) -> Path:
    """Train unless ``out/last.pt`` already holds the finished run (re-running is cheap)."""
    config = load_config(recipe, overrides)
    last = out / "last.pt"
    if last.is_file():
        ckpt = load_checkpoint(last)
        if ckpt["state"]["epoch"] >= config.train.epochs and ckpt["config"] == config.to_dict():
            print(f"{out.name}: already trained ({last})", flush=True)
            return last
        same = ckpt["config"] == config.to_dict()  # else a changed recipe: move the old aside
        train(config, out, resume=same, overwrite=not same)
        return last
    train(config, out)
    return last


def run_demo(out: str | Path = "runs/demo", data: str = "fashion-mnist",
             data_dir: str | None = None, epochs: int | None = None) -> dict:
    """Train, evaluate and analyse; returns the headline numbers."""
    if data not in RECIPES:
        raise ValueError(f"the demo runs on {', '.join(RECIPES)}; got {data!r}")
    out = Path(out)
    aig_name, base_name, finetune = RECIPES[data]
    aig_recipe, base_recipe = RECIPES_DIR / aig_name, RECIPES_DIR / base_name
    common = [f"data.root={data_dir}"] if data_dir else []
    if epochs:
        common.append(f"train.epochs={epochs}")
    baseline_extra = CIFAR_BASELINE if data == "cifar10" else []
    print(f"== 1/4 training the dense baseline ({base_recipe.name})", flush=True)
    base_ckpt = _train_once(base_recipe, common + baseline_extra, out / "baseline")
    aig_extra = [f"model.init_from={base_ckpt.resolve()}"] if finetune else []
    print(f"== 2/4 training the AIG model ({aig_recipe.name}"
          f"{', starting from the baseline weights' if finetune else ''})", flush=True)
    aig_ckpt = _train_once(aig_recipe, common + aig_extra, out / "aig")
    print("== 3/4 evaluating both on the test set", flush=True)
    base = evaluate_checkpoint(str(base_ckpt), data_dir=data_dir)
    aig = evaluate_checkpoint(str(aig_ckpt), data_dir=data_dir)
    print("== 4/4 analysing the AIG model", flush=True)
    command = "aignet demo" + (f" --data {data}" if data != "fashion-mnist" else "") + \
        (f" --data-dir {data_dir}" if data_dir else "")
    analysis = analyze(aig_ckpt, out / "report", data_dir=data_dir, compare=(str(base_ckpt),),
                       command=command)
    speed = _speed(aig_ckpt, base_ckpt, data_dir)
    summary = {
        "aig_top1_error": aig["top1_error"], "baseline_top1_error": base["top1_error"],
        "accuracy_gap_points": 100 * (aig["top1_error"] - base["top1_error"]),
        "aig_macs_mean": aig["macs_mean"], "baseline_macs": base["macs_mean"],
        "mac_saving": 1.0 - aig["macs_mean"] / base["macs_mean"],
        "measured_speedup": speed["measured_speedup"], "speed": speed,
        "max_category_rate_gap": analysis["max_category_rate_gap"],
        "adjusted_rand_index": analysis.get("adjusted_rand_index"),
        "report": str((out / "report" / "report.html").resolve()),
    }
    _print_summary(summary)
    return summary


def _speed(aig_ckpt: Path, base_ckpt: Path, data_dir: str | None) -> dict:
    aig = load_model(str(aig_ckpt))
    config = trained_config(aig)
    base = load_model(str(base_ckpt))
    data = build_configured_data(config.data, data_dir, val_batch_size=256, limit_train=1)
    images = next(data.val.iter_from(0))[0]
    return measure_speedup(aig, images, dense_model=base)


def _print_summary(s: dict) -> None:
    print(f"baseline top-1 error  {100 * s['baseline_top1_error']:.2f}%   "
          f"AIG top-1 error {100 * s['aig_top1_error']:.2f}% "
          f"({s['accuracy_gap_points']:+.2f} points)")
    print(f"MACs per image        baseline {s['baseline_macs'] / 1e6:.2f}M   AIG "
          f"{s['aig_macs_mean'] / 1e6:.2f}M   saving {100 * s['mac_saving']:.1f}%")
    print(f"measured speed-up     {s['measured_speedup']:.2f}x (dense baseline vs sparse AIG, "
          f"batch {s['speed']['batch_size']}, {s['speed']['threads']} threads, this machine)")
    print(f"category gap          {s['max_category_rate_gap']:.2f} (largest difference of one "
          "layer's execution rate between two categories)")
    print(f"report                {s['report']}")
    print(json.dumps({k: v for k, v in s.items() if k != "speed"}), flush=True)


__all__ = ["run_demo"]
