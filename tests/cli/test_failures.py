"""The catalogue of mistakes: each bad input, through the real command line, ends in exit
status 2 and one line on stderr, and every file that existed before is byte-identical after."""

from pathlib import Path

import pytest

from aignet.cli import main
from data_factory import write_idx_dataset


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace: tiny MNIST-layout data, a recipe, a finished run, a junk file."""
    import os

    os.environ["AIGNET_CACHE"] = "off"
    root = tmp_path_factory.mktemp("ws")
    data = write_idx_dataset(root / "mnist", n_train=128, n_test=64)
    recipe = root / "recipe.yaml"
    recipe.write_text(
        "model: {name: aig_resnet20_cifar, target_rates: 0.5}\n"
        f"data: {{name: mnist, root: {data}, batch_size: 32, val_batch_size: 64}}\n"
        "optim: {lr: 0.05, schedule: cosine}\n"
        "train: {epochs: 1, threads: 2}\n")
    assert main(["train", str(recipe), "--out", str(root / "run")]) == 0
    (root / "junk.pt").write_bytes(b"not a checkpoint")
    (root / "afile").write_text("I am a file\n")
    (root / "bad.yaml").write_text("model: [unclosed\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "loop.yaml").write_text("base: loop.yaml\n")
    (root / "emptydata").mkdir()
    return root


T = "{recipe}"
RUN = "{root}/run"
CKPT = "{root}/run/last.pt"
FRESH = "{root}/fresh"

CASES = [
    # -- aignet train: the run folder ----------------------------------------------------------
    ("finished run without --resume", ["train", T, "--out", RUN], "already holds a run"),
    ("--out is a file", ["train", T, "--out", "{root}/afile"], "is a file"),
    ("--resume without a checkpoint", ["train", T, "--out", FRESH, "--resume"], "no checkpoint"),
    ("--resume and --overwrite", ["train", T, "--out", RUN, "--resume", "--overwrite"],
     "not allowed with"),
    ("--resume with another model", ["train", T, "--out", RUN, "--resume", "--set",
                                     "model.name=aig_resnet32_cifar"], "model.name"),
    ("--resume with another batch", ["train", T, "--out", RUN, "--resume", "--set",
                                     "data.batch_size=16"], "data.batch_size"),
    ("--resume with other targets", ["train", T, "--out", RUN, "--resume", "--set",
                                     "model.target_rates=0.3"], "model.target_rates"),
    ("--resume with another seed", ["train", T, "--out", RUN, "--resume", "--set",
                                    "train.seed=3"], "train.seed"),
    ("no --out", ["train", T], "required"),
    # -- aignet train: recipes ------------------------------------------------------------------
    ("missing recipe", ["train", "{root}/nope.yaml", "--out", FRESH], "config file not found"),
    ("invalid YAML", ["train", "{root}/bad.yaml", "--out", FRESH], "invalid YAML"),
    ("recipe not a mapping", ["train", "{root}/list.yaml", "--out", FRESH], "must be a mapping"),
    ("circular base", ["train", "{root}/loop.yaml", "--out", FRESH], "circular"),
    ("unknown key", ["train", T, "--out", FRESH, "--set", "train.epoch=3"], "did you mean"),
    ("override without =", ["train", T, "--out", FRESH, "--set", "trainepochs"],
     "section.key=value"),
    ("section as value", ["train", T, "--out", FRESH, "--set", "train=3"], "must be a mapping"),
]
_BAD_SETTINGS = [
    ("optim.lr=fast", "optim.lr"), ("optim.lr=-1", "optim.lr must be > 0"),
    ("optim.lr=0", "optim.lr must be > 0"), ("train.epochs=", "train.epochs"),
    ("train.epochs=0", "train.epochs must be >= 1"), ("train.epochs=2.5", "train.epochs"),
    ("train.epochs=many", "train.epochs"), ("data.limit_train=-5", "data.limit_train"),
    ("data.limit_train=0", "data.limit_train"), ("data.limit_val=-1", "data.limit_val"),
    ("data.batch_size=0", "batch sizes must be >= 1"), ("data.val_batch_size=-2", "batch sizes"),
    ("data.workers=-1", "data.workers"), ("train.eval_every=0", "train.eval_every"),
    ("train.threads=0", "train.threads"), ("optim.momentum=-0.1", "optim.momentum"),
    ("optim.weight_decay=-1", "optim.weight_decay"), ("optim.gamma=0", "optim.gamma"),
    ("optim.gamma=2", "optim.gamma"), ("optim.schedule=linear", "unknown schedule"),
    ("optim.warmup_epochs=-1", "optim.warmup_epochs"), ("optim.min_lr=-1", "optim.min_lr"),
    ("optim.gate_lr_factor=0", "optim.gate_lr_factor"),
    ("train.amp=fp8", "unknown train.amp"), ("train.amp=fp16", "needs a GPU"),
    ("train.eval_mode=sometimes", "unknown train.eval_mode"),
    ("train.eval_threshold=2", "eval_threshold"), ("train.save_every_steps=-1", "save_every"),
    ("loss.gate_mode=medium", "unknown loss.gate_mode"), ("loss.tau=0", "loss.tau"),
    ("loss.target_weight=-1", "loss.target_weight"), ("loss.distill_weight=2", "distill_weight"),
    ("loss.distill_temperature=0", "distill_temperature"),
    ("loss.target_warmup_epochs=-1", "target_warmup_epochs"),
    ("loss.label_smoothing=1.5", "label_smoothing"), ("data.name=svhn", "unknown data set"),
    ("model.name=resnet_999", "unknown model"), ("model.target_rates=1.5", "target rate"),
    ("model.target_rates=fast", "cannot read target rates"),
    ("model.target_rates=aig50:0.6", "aig50"),
    ("model.target_rates=0.5,0.5", "residual blocks"),
    ("model.name=resnet20_cifar", "takes no target_rates"),
    ("model.kwargs={gate_hidden: -3}", "gate"),
    ("model.kwargs={colour: red}", "unexpected keyword"),
    ("model.init_from={root}/nope.pt", "not found"),
    ("model.init_from={root}/junk.pt", "cannot load checkpoint"),
    ("loss.distill_from={root}/nope.pt", "not found"),
    ("data.root={root}/nowhere", "nowhere"),
    ("data.root={root}/emptydata", "emptydata"),
]
CASES += [(f"--set {s}", ["train", T, "--out", FRESH, "--set", s], m)
          for s, m in _BAD_SETTINGS if m is not None]
CASES += [
    ("milestones not positive", ["train", T, "--out", FRESH, "--set", "optim.schedule=step",
                                 "--set", "optim.milestones=[-3]"], "optim.milestones"),
    # -- aignet eval / recalibrate -------------------------------------------------------------
    ("eval missing file", ["eval", "{root}/nope.pt"], "not found"),
    ("eval junk file", ["eval", "{root}/junk.pt"], "cannot load checkpoint"),
    ("eval --limit -1", ["eval", CKPT, "--limit", "-1"], "must be >= 1"),
    ("eval --limit 0", ["eval", CKPT, "--limit", "0"], "must be >= 1"),
    ("eval --batch-size 0", ["eval", CKPT, "--batch-size", "0"], "must be >= 1"),
    ("eval --threshold 2", ["eval", CKPT, "--threshold", "2"], "threshold"),
    ("eval --mode sometimes", ["eval", CKPT, "--mode", "sometimes"], "invalid choice"),
    ("eval nothing", ["eval"], "--pretrained"),
    ("eval both sources", ["eval", CKPT, "--pretrained", "x/y"], "one"),
    ("eval --pretrained no slash", ["eval", "--pretrained", "resnet20_cifar"], "MODEL/TAG"),
    ("eval --pretrained unknown", ["eval", "--pretrained", "resnet20_cifar/svhn"],
     "no shipped weights"),
    ("recalibrate onto a file", ["recalibrate", CKPT, "--out", "{root}/afile"], "exists"),
    ("recalibrate onto the run", ["recalibrate", CKPT, "--out", CKPT], "exists"),
    ("recalibrate --images 0", ["recalibrate", CKPT, "--out", "{root}/r.pt", "--images", "0"],
     "must be >= 1"),
    # -- aignet analyze / attack ----------------------------------------------------------------
    ("analyze missing file", ["analyze", "{root}/nope.pt", "--out", "{root}/an"], "not found"),
    ("analyze junk", ["analyze", "{root}/junk.pt", "--out", "{root}/an"], "cannot load"),
    ("analyze --limit 0", ["analyze", CKPT, "--limit", "0"], "must be >= 1"),
    ("analyze --out a file", ["analyze", CKPT, "--out", "{root}/afile"], "afile"),
    ("attack --limit 0", ["attack", CKPT, "--limit", "0"], "must be >= 1"),
    ("attack --eps abc", ["attack", CKPT, "--eps", "abc"], "comma-separated numbers"),
    ("attack --modes", ["attack", CKPT, "--modes", "sometimes", "--out", "{root}/at"],
     "unknown mode"),
    ("attack --out a file", ["attack", CKPT, "--out", "{root}/afile", "--limit", "8"], "afile"),
    ("attack missing file", ["attack", "{root}/nope.pt", "--out", "{root}/at"], "not found"),
    # -- aignet info / models / bench / demo -----------------------------------------------------
    ("info unknown model", ["info", "resnet_999"], "unknown model"),
    ("info bad targets", ["info", "aig_resnet20_cifar", "--target-rates", "fast"],
     "cannot read target rates"),
    ("info dense with targets", ["info", "resnet20_cifar", "--target-rates", "0.5"],
     "takes no target_rates"),
    ("models no match", ["models", "zzz*"], "no registered model"),
    ("bench a dense model", ["bench", "--model", "resnet20_cifar"], "not a gated model"),
    ("bench --rate 2", ["bench", "--rate", "2"], "--rate"),
    ("bench --batch-sizes 0", ["bench", "--batch-sizes", "0"], "batch sizes must be >= 1"),
    ("bench --reps 0", ["bench", "--reps", "0"], "must be >= 1"),
    ("demo --epochs 0", ["demo", "--epochs", "0"], "must be >= 1"),
    ("demo --data svhn", ["demo", "--data", "svhn"], "invalid choice"),
    ("unknown command", ["fly"], "invalid choice"),
]


@pytest.mark.parametrize("argv, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_is_one_line_exit_2_and_touches_nothing(ws, capsys, argv, message):
    recipe = ws / "recipe.yaml"
    argv = [a.replace("{root}", str(ws)).replace("{recipe}", str(recipe)) for a in argv]
    before = _snapshot(ws)
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    assert _snapshot(ws) == before
    assert not (ws / "fresh" / "last.pt").exists()


def test_the_catalogue_is_long_enough():
    assert len(CASES) >= 60
