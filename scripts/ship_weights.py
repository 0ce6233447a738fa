"""Ship trained weights inside the package: half-precision safetensors plus a manifest entry.

For each training checkpoint: write ``src/aignet/weights/TAG/MODEL.safetensors`` (float16),
then evaluate the shipped file itself (fused, sparse, T = 0.5) on all test images and on the
first 1,000 (what the tests check), and record sha256, config, commit and the numbers.

    python scripts/ship_weights.py --tag cifar10 --data-dir ../shared/data \
        runs/resnet20/last.pt runs/aig56/last.pt ...
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from aignet.analysis.evaluation import evaluate_checkpoint
from aignet.models.pretrained import export_weights, shipped_entry
from aignet.training.checkpoint import load_checkpoint, total_epochs

TEST_SUBSET = 1000


def commit() -> str:
    """The current git commit (what trained the weights is in the config; this is the code)."""
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def portable(path: str | None) -> str | None:
    """A path as the README writes it (``runs/NAME/last.pt``, ``../shared/data``), without the
    folders of the machine that trained the weights."""
    if not path or shipped_entry(path):  # shipped weights are named, not located
        return path
    parts = Path(path).parts
    for anchor in ("runs", "shared"):
        if anchor in parts:
            rest = Path(*parts[parts.index(anchor):])
            return str(rest if anchor == "runs" else Path("..") / rest)
    return Path(path).name


def portable_config(config: dict) -> dict:
    """The training config with its paths made :func:`portable`."""
    config = json.loads(json.dumps(config))
    config["model"]["init_from"] = portable(config["model"].get("init_from"))
    config["loss"]["distill_from"] = portable(config["loss"].get("distill_from"))
    config["data"]["root"] = portable(config["data"].get("root"))
    return config


def ship(path: str, tag: str, data_dir: str | None) -> dict:
    """Export one checkpoint, evaluate the exported weights, record the numbers."""
    ckpt = load_checkpoint(path)
    entry = {"model": ckpt["config"]["model"]["name"], "config": portable_config(ckpt["config"]),
             "data_info": ckpt["data_info"], "train_epochs": total_epochs(ckpt["config"]),
             "commit": commit(), "source_checkpoint": portable(str(path)), "threshold": 0.5,
             "top1_error": None, "macs_mean": None}
    entry = export_weights(ckpt["model"], entry, tag)
    name = f"{entry['model']}/{tag}"
    full = evaluate_checkpoint(name, data_dir=data_dir)
    subset = evaluate_checkpoint(name, data_dir=data_dir, limit=TEST_SUBSET)
    entry.update(top1_error=full["top1_error"], macs_mean=full["macs_mean"],
                 test_images=full["images"], mac_ratio=full["mac_ratio"],
                 top1_error_first1000=subset["top1_error"],
                 macs_mean_first1000=subset["macs_mean"])
    return export_weights(ckpt["model"], entry, tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="training checkpoints (last.pt)")
    parser.add_argument("--tag", default="cifar10",
                        help="weights tag: the data set, with a suffix for another recipe "
                             "(cifar10_45ep)")
    parser.add_argument("--data-dir", help="folder holding the data set")
    args = parser.parse_args()
    for path in args.checkpoints:
        entry = ship(path, args.tag, args.data_dir)
        print(json.dumps({k: entry[k] for k in ("model", "file", "sha256", "top1_error",
                                                 "macs_mean", "train_epochs")}), flush=True)


if __name__ == "__main__":
    main()
