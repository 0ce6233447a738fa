"""``aignet predict``: classify image files with a trained model."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from aignet.cli.common import add_command, positive_int

EXAMPLE = "aignet predict --pretrained aig_resnet56_cifar/cifar10 photos/ cat.png 'shots/*.jpg'"


def add(sub: argparse._SubParsersAction) -> None:
    from aignet.nn.gates import INFERENCE_MODES

    p = add_command(sub, "predict", EXAMPLE,
                    help="classify image files: top-k classes, executed blocks and MACs")
    p.add_argument("checkpoint", nargs="?", help="a training checkpoint (or use --pretrained)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs")
    p.add_argument("--pretrained", metavar="MODEL/TAG", help="shipped weights instead")
    p.add_argument("--top-k", type=positive_int, default=3, help="classes reported per image")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--mode", choices=INFERENCE_MODES, default="deterministic")
    p.add_argument("--threshold", type=float, default=0.5, help="gate threshold T")
    p.add_argument("--device", default="cpu")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON document")
    out.add_argument("--csv", action="store_true", help="CSV with one row per image")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aignet.analysis.predict import predict_files
    from aignet.nn.target_rates import check_rate

    check_rate(args.threshold, "--threshold")
    paths = list(args.paths)
    if args.pretrained:  # argparse gives the first path to `checkpoint`
        paths = ([args.checkpoint] if args.checkpoint else []) + paths
    elif args.checkpoint is None:
        raise ValueError("give a checkpoint or --pretrained MODEL/TAG, then image paths")
    rows = predict_files(args.pretrained or args.checkpoint, paths, top_k=args.top_k,
                         batch_size=args.batch_size, mode=args.mode, threshold=args.threshold,
                         device=args.device)
    if args.json:
        print(json.dumps(rows, indent=1))
    elif args.csv:
        _write_csv(rows, args.top_k)
    else:
        for r in rows:
            if "error" in r:
                print(f"{r['file']}: unreadable ({r['error']})")
                continue
            top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
            print(f"{r['file']}: {top} | {r['executed_blocks']} blocks, "
                  f"{r['macs'] / 1e6:.1f}M MACs")
    return 0


def _write_csv(rows: list[dict], k: int) -> None:
    writer = csv.writer(sys.stdout)
    header = ["file"] + [f"{w}{i + 1}" for i in range(k) for w in ("class", "probability")]
    writer.writerow(header + ["executed_blocks", "macs", "error"])
    for r in rows:
        top = [v for t in r.get("top", []) for v in (t["class"], t["probability"])]
        top += [""] * (2 * k - len(top))
        writer.writerow([r["file"], *top, r.get("executed_blocks", ""), r.get("macs", ""),
                         r.get("error", "")])
