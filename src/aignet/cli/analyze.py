"""``aignet analyze``: figures, numbers and the HTML report of a trained AIG model."""

from __future__ import annotations

import argparse
import json
import sys

from aignet.cli.common import add_command, positive_int

EXAMPLE = "aignet analyze runs/demo/aig/last.pt --compare runs/demo/baseline/last.pt"


def add(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "analyze", EXAMPLE,
                    help="figures, numbers and report.html of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--out", default=None, help="output folder (default: CHECKPOINT_DIR/analysis)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--groups", default=None, help="JSON mapping class (name or index) -> group")
    p.add_argument("--compare", nargs="*", default=[], help="more checkpoints for accuracy vs MACs")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="analyse the first N test images")
    p.add_argument("--sweep-images", type=positive_int, default=2000,
                   help="test images used by the threshold sweep")
    p.add_argument("--json", action="store_true", help="print the key numbers as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aignet.analysis.analyze import analyze

    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "analysis"
    command = "aignet " + " ".join(sys.argv[1:]) if sys.argv[1:] else "aignet analyze"
    r = analyze(args.checkpoint, out, data_dir=args.data_dir, groups_path=args.groups,
                compare=tuple(args.compare), limit=args.limit, sweep_images=args.sweep_images,
                command=command)
    keys = ("top1_error", "macs_mean", "macs_dense", "mac_saving", "max_category_rate_gap",
            "adjusted_rand_index")
    summary = {k: r[k] for k in keys if k in r}
    summary.update(measured_speedup=r["speed"]["measured_speedup"],
                   report=str(out / "report.html"), analysis=str(out / "analysis.json"))
    print(json.dumps(summary, indent=2) if args.json else
          "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 0
