"""Training throughput from a 32x32 image folder against the binary CIFAR-10 reader.

Writes the first N CIFAR-10 training images (and M test images) as PNG files into a temporary
``train/<class>/`` + ``val/<class>/`` folder, builds both pipelines, and times training steps
of ResNet-20 (bf16 autocast, channels_last, batch 128) fed by each. The first epoch of the
folder includes decoding; it is reported separately, then the cached arrays are used.
Prints JSON and writes benchmarks/results/folder_speed_cpu.json.

    python benchmarks/folder_speed.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import aignet
from aignet.data import build_data, load_arrays

RESULTS = Path(__file__).resolve().parent / "results"


def write_folder(root: Path, data_dir: str, n_train: int, n_val: int) -> None:
    """CIFAR-10 images as PNG files in the layout ``aignet`` reads as ``imagefolder``."""
    from PIL import Image

    arrays = load_arrays("cifar10", data_dir)
    for split, images, labels, n in (("train", arrays.train_images, arrays.train_labels, n_train),
                                     ("val", arrays.test_images, arrays.test_labels, n_val)):
        for i in range(n):
            folder = root / split / arrays.classes[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i].transpose(1, 2, 0)).save(folder / f"{i:05d}.png")


def images_per_s(data, steps: int) -> float:
    """Training images/s of ResNet-20 fed by ``data.train`` (after 3 warm-up steps)."""
    torch.manual_seed(0)
    model = aignet.create_model("resnet20_cifar").to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    seen, start = 0, None
    for step, (x, y) in enumerate(data.train.iter_from(0)):
        if step == 3:
            seen, start = 0, time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16):
            loss = F.cross_entropy(model(x).logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
        if step == 3 + steps:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-bin")
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--out", default=str(RESULTS / "folder_speed_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "folder", Path(tmp) / "cache"
        write_folder(root, args.data_dir, args.train_images, args.val_images)
        import os
        os.environ["AIGNET_CACHE"] = str(cache)
        opts = dict(channels_last=True, limit_train=args.train_images)
        start = time.perf_counter()
        folder = build_data("imagefolder", root, 128, **opts)
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        folder = build_data("imagefolder", root, 128, **opts)
        cached_s = time.perf_counter() - start
        binary = build_data("cifar10", args.data_dir, 128, **opts)
        rates = {"binary": images_per_s(binary, args.steps),
                 "folder": images_per_s(folder, args.steps)}
    result = {"torch": torch.__version__, "train_images": args.train_images,
              "folder_first_build_s": round(decode_s, 2), "folder_cached_build_s":
              round(cached_s, 2), "binary_images_per_s": round(rates["binary"], 1),
              "folder_images_per_s": round(rates["folder"], 1),
              "folder_relative": round(rates["folder"] / rates["binary"], 3),
              "input_size": folder.info.input_size, "mean": folder.info.mean,
              "command": "python benchmarks/folder_speed.py --data-dir ../shared/data"}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
