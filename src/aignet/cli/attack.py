"""``aignet attack``: adversarial robustness experiments."""

from __future__ import annotations

import argparse
import json
import sys

from aignet.cli.common import add_command, positive_int

EXAMPLE = "aignet attack runs/demo/aig/last.pt runs/demo/baseline/last.pt --limit 200"


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
            from None


def add(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "attack", EXAMPLE,
                    help="FGSM/PGD (+JPEG, EOT) and attacks on the gates")
    p.add_argument("checkpoints", nargs="+", help="AIG and/or dense checkpoints")
    p.add_argument("--out", default="runs/attack")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--eps", type=_float_list, default=[0.0, 0.005, 0.01, 0.02, 0.03],
                   help="L-inf budgets in [0, 1] pixel scale")
    p.add_argument("--jpeg", type=int, default=75, help="JPEG quality of the defence")
    p.add_argument("--eot", type=positive_int, default=4,
                   help="gate samples per EOT gradient (1: off)")
    p.add_argument("--pgd-steps", type=positive_int, default=5)
    p.add_argument("--gate-eps", type=float, default=None,
                   help="epsilon of the rate and gate attacks (default: the largest --eps)")
    p.add_argument("--modes", default="deterministic,stochastic",
                   help="inference modes of the AIG models")
    p.add_argument("--group", default=None, help="class group for the before/after rates")
    p.add_argument("--limit", type=positive_int, default=500, help="test images attacked")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print attack.json")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from aignet.analysis.robustness import AttackSettings, attack_checkpoints
    from aignet.nn.gates import INFERENCE_MODES

    modes = tuple(m for m in args.modes.split(",") if m)
    for mode in modes:
        if mode not in INFERENCE_MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(INFERENCE_MODES)}")
    settings = AttackSettings(eps=tuple(args.eps), jpeg_quality=args.jpeg, eot=args.eot,
                              pgd_steps=args.pgd_steps, gate_eps=args.gate_eps, modes=modes,
                              limit=args.limit, batch_size=args.batch_size, group=args.group,
                              seed=args.seed)
    command = "aignet " + " ".join(sys.argv[1:]) if sys.argv[1:] else "aignet attack"
    result = attack_checkpoints(args.checkpoints, args.out, settings, args.data_dir, command)
    print(json.dumps(result, indent=1) if args.json else result["verdict"]["text"] +
          f"\nreport: {args.out}/attack_report.html")
    return 0
