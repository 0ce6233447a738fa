from pathlib import Path

import pytest

from aignet.config import OptimConfig, load_config
from aignet.optim import build_optimizer, lr_factor, parameter_groups
from aignet.registry import create_model

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_loads_and_builds_its_model(path):
    config = load_config(path)
    kwargs = dict(config.model.kwargs)
    if config.model.name.startswith("aig_"):
        kwargs["target_rates"] = config.model.target_rates
    create_model(config.model.name, **kwargs)


def test_papers_recipes():
    aig = load_config(CONFIGS[0].parent / "cifar10_aig110.yaml")
    assert (aig.train.epochs, aig.data.batch_size, aig.optim.lr) == (350, 256, 0.1)
    assert aig.optim.milestones == [150, 250] and aig.optim.weight_decay == 5e-4
    assert aig.model.target_rates == 0.7
    a50 = load_config(CONFIGS[0].parent / "imagenet_aig50_t0.4.yaml")
    assert a50.optim.weight_decay == 1e-4 and a50.optim.milestones == [30, 60, 90]
    assert a50.model.target_rates == "aig50:0.4" and a50.train.epochs == 100


def test_overrides_and_base(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("optim: {lr: 0.5, milestones: [3]}\ntrain: {epochs: 9}\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\ntrain: {seed: 4}\n")
    config = load_config(child, ["train.epochs=2", "optim.milestones=[1, 2]", "data.root=/x"])
    assert config.optim.lr == 0.5 and config.train.seed == 4 and config.train.epochs == 2
    assert config.optim.milestones == [1, 2] and config.data.root == "/x"


@pytest.mark.parametrize("override,message", [
    ("optim.lr=-0.1", "optim.lr must be > 0"),
    ("optim.schedule=linear", "unknown schedule 'linear'"),
    ("train.epoch=3", "unknown config key train.epoch; did you mean train.epochs"),
    ("train.amp=fp8", "unknown train.amp"),
    ("data.name=svhn", "unknown data set 'svhn'"),
    ("train.eval_threshold=1.5", "eval_threshold must be in"),
    ("trainepochs", "must look like section.key=value"),
])
def test_bad_configs_fail_with_clear_messages(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config("nope.yaml")


def test_schedules():
    step = OptimConfig(lr=0.1, schedule="step", milestones=[150, 250], gamma=0.1)
    assert lr_factor(0, step, 350) == 1.0
    assert lr_factor(150, step, 350) == pytest.approx(0.1)
    assert lr_factor(300, step, 350) == pytest.approx(0.01)
    cos = OptimConfig(lr=0.1, schedule="cosine", warmup_epochs=2, min_lr=0.001)
    assert lr_factor(1, cos, 10) == pytest.approx(0.5)
    assert lr_factor(2, cos, 10) == pytest.approx(1.0)
    assert lr_factor(10, cos, 10) == pytest.approx(0.01)
    assert lr_factor(6, cos, 10) == pytest.approx(0.01 + 0.99 * 0.5)


def test_gate_parameter_group():
    model = create_model("aig_resnet20_cifar")
    groups = parameter_groups(model, 0.1, 0.5)
    assert [g["name"] for g in groups] == ["network", "gates"]
    n_gate = sum(p.numel() for p in groups[1]["params"])
    assert n_gate == sum(p.numel() for n, p in model.named_parameters() if ".gate." in n)
    opt = build_optimizer(model, OptimConfig(lr=0.1, gate_lr_factor=0.5))
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.05]
    assert len(parameter_groups(create_model("resnet20_cifar"), 0.1, 0.5)) == 1
