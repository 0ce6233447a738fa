"""The ``aignet`` command line: ``aignet models``, ``aignet info NAME`` ..."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Callable, Sequence

from aignet.registry import create_model, list_models

Handler = Callable[[argparse.Namespace], int]


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'aig_*'")
    p.add_argument("--pretrained", action="store_true",
                   help="list the shipped weights (MODEL/TAG) instead")
    p.set_defaults(handler=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    if args.pretrained:
        from aignet.pretrained import list_pretrained

        names = [n for n in list_pretrained() if fnmatch.fnmatch(n, args.pattern)]
        print("\n".join(names) if names else "no shipped weights match")
        return 0
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no registered model matches {args.pattern!r}")
    print("\n".join(names))
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters, MACs and per-block structure of a model")
    p.add_argument("name", help="registered model name (see `aignet models`)")
    p.add_argument("--input-size", type=int, default=None, help="square input size in pixels")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--in-chans", type=int, default=None, help="input channels (1: grayscale)")
    p.add_argument("--target-rates", default=None,
                   help="a number, comma-separated per-block list, or preset 'NAME:t'")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from aignet.info import format_info, model_info
    from aignet.target_rates import parse_target_spec

    kwargs = {k: v for k, v in (("num_classes", args.num_classes), ("in_chans", args.in_chans),
                                ("target_rates", parse_target_spec(args.target_rates)))
              if v is not None}
    model = create_model(args.name, **kwargs)
    info = model_info(model, args.input_size)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return values


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time dense vs masked vs sparse inference")
    p.add_argument("--model", default="aig_resnet110_cifar", help="gated model to time")
    p.add_argument("--rate", type=float, default=0.6,
                   help="fraction of images that opens each gate (calibrated)")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 32, 256])
    p.add_argument("--reps", type=int, default=9, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels_last memory format (default on: 2-4x faster convs on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON document to this file")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aignet.bench import benchmark, format_rows
    from aignet.target_rates import check_rate

    check_rate(args.rate, "--rate")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA GPU is visible")
    result = benchmark(args.model, args.rate, args.batch_sizes, args.reps, args.warmup,
                       args.device, args.threads, args.channels_last, args.seed,
                       progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text if args.json else format_rows(result))
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML recipe (torchrun for DDP)")
    p.add_argument("config", help="YAML recipe, e.g. configs/cifar10_aig110.yaml")
    p.add_argument("--out", required=True, help="run directory (last.pt, best.pt, log.jsonl)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=1 (repeatable)")
    p.add_argument("--data-dir", default=None, help="shortcut for --set data.root=PATH")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.set_defaults(handler=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from aignet.config import load_config
    from aignet.train import train

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.root={args.data_dir}")
    config = load_config(args.config, overrides)
    train(config, args.out, resume=args.resume)
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from aignet.gates import INFERENCE_MODES

    p = sub.add_parser("eval", help="accuracy, MACs and execution rates of a checkpoint")
    p.add_argument("checkpoint", nargs="?",
                   help="a training checkpoint (last.pt / best.pt), or shipped weights MODEL/TAG")
    p.add_argument("--pretrained", metavar="MODEL/TAG",
                   help="shipped weights, e.g. aig_resnet56_cifar/cifar10 (aignet models "
                        "--pretrained lists them)")
    p.add_argument("--data-dir", default=None, help="data directory (default: the run's)")
    p.add_argument("--mode", choices=INFERENCE_MODES, default="deterministic")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--execution", choices=("sparse", "masked"), default="sparse")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--no-fuse", action="store_true", help="run the unfused model")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0, help="generator seed (stochastic mode)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(handler=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from aignet.evaluation_run import evaluate_checkpoint, format_eval

    if (args.checkpoint is None) == (args.pretrained is None):
        raise ValueError("aignet eval: give a checkpoint path or --pretrained MODEL/TAG (one)")
    if args.pretrained and "/" not in args.pretrained:
        raise ValueError(f"--pretrained {args.pretrained}: expected MODEL/TAG, e.g. "
                         "aig_resnet56_cifar/cifar10")
    if args.pretrained:  # a one-line error naming what is shipped when it is not
        from aignet.pretrained import pretrained_entry
        pretrained_entry(*args.pretrained.split("/", 1))
    result = evaluate_checkpoint(args.checkpoint or args.pretrained, data_dir=args.data_dir,
                                 mode=args.mode, threshold=args.threshold, execution=args.execution,
                                 batch_size=args.batch_size, limit=args.limit,
                                 fused=not args.no_fuse, channels_last=args.channels_last,
                                 device=args.device, seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else format_eval(result))
    return 0


def _add_recalibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recalibrate", help="re-estimate BatchNorm statistics under inference-time gating",
        description="Re-estimate the BatchNorm statistics of a trained AIG model with its gates "
                    "deterministic, on training images; writes a new checkpoint. Example: "
                    "aignet recalibrate runs/aig56/last.pt --out runs/aig56/recal.pt",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="a training checkpoint")
    p.add_argument("--out", required=True, help="the new checkpoint (must not exist)")
    p.add_argument("--data-dir", default=None, help="data directory (default: the run's)")
    p.add_argument("--images", type=int, default=10000,
                   help="training images to use (whole batches of 250)")
    p.add_argument("--all-images", action="store_true",
                   help="statistics of every branch over all images (masked), not only the "
                        "images that run it")
    p.add_argument("--threshold", type=float, default=0.5, help="gate threshold T")
    p.add_argument("--device", default="auto")
    p.set_defaults(handler=_cmd_recalibrate)


def _cmd_recalibrate(args: argparse.Namespace) -> int:
    from aignet.evaluation_run import recalibrate_checkpoint

    result = recalibrate_checkpoint(args.checkpoint, args.out, data_dir=args.data_dir,
                                    images=args.images, executed_only=not args.all_images,
                                    threshold=args.threshold, device=args.device)
    print(json.dumps(result))
    return 0


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="figures, numbers and report.html of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--out", default=None, help="output folder (default: CHECKPOINT_DIR/analysis)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--groups", default=None, help="JSON mapping class (name or index) -> group")
    p.add_argument("--compare", nargs="*", default=[], help="more checkpoints for accuracy vs MACs")
    p.add_argument("--limit", type=int, default=None, help="analyse the first N test images")
    p.add_argument("--sweep-images", type=int, default=2000,
                   help="test images used by the threshold sweep")
    p.add_argument("--json", action="store_true", help="print the key numbers as JSON")
    p.set_defaults(handler=_cmd_analyze)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aignet.analyze import analyze

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


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train AIG + dense baseline, evaluate, analyse, report")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--data", default="fashion-mnist", choices=("fashion-mnist", "cifar10"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from aignet.demo import run_demo

    run_demo(args.out, args.data, args.data_dir, args.epochs)
    return 0


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
            from None


def _add_attack(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="FGSM/PGD (+JPEG, EOT) and attacks on the gates")
    p.add_argument("checkpoints", nargs="+", help="AIG and/or dense checkpoints")
    p.add_argument("--out", default="runs/attack")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--eps", type=_float_list, default=[0.0, 0.005, 0.01, 0.02, 0.03],
                   help="L-inf budgets in [0, 1] pixel scale")
    p.add_argument("--jpeg", type=int, default=75, help="JPEG quality of the defence")
    p.add_argument("--eot", type=int, default=4, help="gate samples per EOT gradient (1: off)")
    p.add_argument("--pgd-steps", type=int, default=5)
    p.add_argument("--gate-eps", type=float, default=None,
                   help="epsilon of the rate and gate attacks (default: the largest --eps)")
    p.add_argument("--modes", default="deterministic,stochastic",
                   help="inference modes of the AIG models")
    p.add_argument("--group", default=None, help="class group for the before/after rates")
    p.add_argument("--limit", type=int, default=500, help="test images attacked")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print attack.json")
    p.set_defaults(handler=_cmd_attack)


def _cmd_attack(args: argparse.Namespace) -> int:
    from aignet.gates import INFERENCE_MODES
    from aignet.robustness import AttackSettings, attack_checkpoints

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


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_models, _add_info, _add_bench, _add_train, _add_eval, _add_recalibrate, _add_analyze,
    _add_demo, _add_attack]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="aignet", description="Convolutional Networks with Adaptive Inference Graphs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors become one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (ValueError, OSError, FloatingPointError) as err:  # OSError: missing, read-only...
        print(f"aignet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aignet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
