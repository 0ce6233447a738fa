import copy
from pathlib import Path

import pytest
import torch

from aignet.models.registry import create_model, create_model_from_config
from aignet.training.config import RECIPES_DIR, OptimConfig, load_config
from aignet.training.optim import build_optimizer, lr_factor, parameter_groups

CONFIGS = sorted(RECIPES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_loads_and_builds_its_model(path):
    config = load_config(path)
    model = create_model_from_config(config.to_dict()["model"], 10, 3)
    assert any(model.gated) == config.model.name.startswith("aig_")


def test_checkout_configs_folder_is_the_shipped_recipes():
    checkout = Path(__file__).resolve().parents[2] / "configs"
    assert sorted(p.name for p in checkout.glob("*.yaml")) == [p.name for p in CONFIGS]
    # A bare name finds the shipped recipe from any directory.
    assert load_config("cifar10_pareto.yaml").train.epochs == 15


def test_builder_defaults_win_unless_the_recipe_sets_targets():
    config = load_config(None, ["model.name=aig_resnet50"])
    assert config.model.target_rates is None
    model = create_model_from_config(config.to_dict()["model"], 1000, 3)
    assert model.target_rates == create_model("aig_resnet50").target_rates  # aig50:0.6
    assert model.target_rates[2] == 0.8 and model.target_rates[4] == 0.6
    dense = create_model_from_config(load_config(None, ["model.name=resnet20_cifar"])
                                     .to_dict()["model"], 10, 3)
    assert not any(dense.gated)


def test_target_rate_lists_from_set_and_info_share_one_parser(capsys):
    from aignet.cli import main

    rates = "1,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.4"
    config = load_config(None, ["model.name=aig_resnet20_cifar", f"model.target_rates={rates}"])
    model = create_model_from_config(config.to_dict()["model"], 10, 3)
    assert model.target_rates == (1.0, *[0.5] * 7, 0.4)
    assert main(["info", "aig_resnet20_cifar", "--target-rates", rates, "--json"]) == 0
    import json
    assert json.loads(capsys.readouterr().out)["target_rates"] == list(model.target_rates)
    with pytest.raises(ValueError, match="cannot read target rates"):
        create_model("aig_resnet20_cifar", target_rates="fast")


def test_papers_recipes():
    aig = load_config(RECIPES_DIR / "cifar10_aig110.yaml")
    assert (aig.train.epochs, aig.data.batch_size, aig.optim.lr) == (350, 256, 0.1)
    assert aig.optim.milestones == [150, 250] and aig.optim.weight_decay == 5e-4
    assert aig.model.target_rates == 0.7
    a50 = load_config(RECIPES_DIR / "imagenet_aig50_t0.4.yaml")
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


def test_optimizer_steps_as_the_per_parameter_loop():
    """build_optimizer's multi-tensor update is the same arithmetic as SGD's plain loop."""
    torch.manual_seed(0)
    model = create_model("aig_resnet20_cifar")
    twin = copy.deepcopy(model)
    cfg = OptimConfig(lr=0.1, gate_lr_factor=5.0, nesterov=True)
    ours, loop = build_optimizer(model, cfg), build_optimizer(twin, cfg)
    for group in loop.param_groups:
        group["foreach"] = False
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for _ in range(3):
        for m, opt in ((model, ours), (twin, loop)):
            torch.manual_seed(1)  # the same gate samples in both
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x).logits, y).backward()
            opt.step()
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
