"""Adversarial attacks on a small trained model (few images)."""

import json

import pytest
import torch

from aignet.analysis.attacks import (
    PixelModel,
    cross_entropy_objective,
    fgsm,
    inflation_objective,
    jpeg_roundtrip,
    pgd,
)
from aignet.analysis.robustness import AttackSettings, attack_checkpoints
from aignet.cli import main
from aignet.data import load_arrays
from aignet.engine.flops import profile_macs
from aignet.nn.gates import set_gate_mode
from aignet.training.checkpoint import load_model
from aignet.training.config import load_config
from aignet.training.train import train
from data_factory import write_idx_dataset

MEAN, STD = (0.1307,), (0.3081,)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("attack")
    data = write_idx_dataset(root / "mnist", n_train=512, n_test=64)
    sets = {"model.name": "aig_resnet20_cifar", "model.target_rates": 0.5, "data.name": "mnist",
            "data.root": str(data), "data.batch_size": 32, "train.epochs": 4,
            "train.threads": 2}
    train(load_config(None, [f"{k}={v}" for k, v in sets.items()]), root / "aig")
    sets.update({"model.name": "resnet20_cifar", "model.target_rates": "null"})
    train(load_config(None, [f"{k}={v}" for k, v in sets.items()]), root / "dense")
    model = load_model(str(root / "aig" / "last.pt"))
    arrays = load_arrays("mnist", data)
    images = torch.from_numpy(arrays.test_images[:48]).float() / 255
    return root, model, images, torch.from_numpy(arrays.test_labels[:48])


def _accuracy(forward, x, y):
    with torch.no_grad():
        return (forward(x).logits.argmax(1) == y).float().mean().item()


def test_eps_zero_and_fgsm_lower_accuracy(trained):
    _, model, x, y = trained
    forward = PixelModel(model, MEAN, STD).eval()
    clean = _accuracy(forward, x, y)
    same = fgsm(forward, model, x, cross_entropy_objective(y), 0.0)
    assert torch.equal(same, x) and _accuracy(forward, same, y) == clean
    attacked = fgsm(forward, model, x, cross_entropy_objective(y), 0.25)
    assert clean > 0.6 and _accuracy(forward, attacked, y) < clean - 0.2


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_budget_and_range(trained, attack):
    _, model, x, y = trained
    forward = PixelModel(model, MEAN, STD).eval()
    eps = 0.05
    if attack == "fgsm":
        adv = fgsm(forward, model, x, cross_entropy_objective(y), eps)
    else:
        adv = pgd(forward, model, x, cross_entropy_objective(y), eps, steps=3,
                  generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max().item() <= eps + 1e-6
    assert adv.min().item() >= 0 and adv.max().item() <= 1
    assert (adv != x).any()


def test_jpeg_roundtrip_is_valid_and_smaller_at_lower_quality():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 1, 1, generator=gen) * torch.linspace(0, 1, 64).view(1, 1, 1, 64)
    images = (base + 0.2 * torch.rand(2, 3, 64, 64, generator=gen)).clamp(0, 1)
    sizes = {}
    for quality in (95, 75, 30):
        out, sizes[quality] = jpeg_roundtrip(images, quality)
        assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
        assert (out - images).abs().mean() < 0.1
    assert all(a > b for a, b in zip(sizes[95], sizes[75], strict=True))
    assert all(a > b for a, b in zip(sizes[75], sizes[30], strict=True))
    gray, _ = jpeg_roundtrip(images[:, :1], 75)
    assert gray.shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match="quality"):
        jpeg_roundtrip(images, 0)


def test_compute_inflation_does_not_reduce_execution(trained):
    _, model, x, _ = trained
    forward = PixelModel(model, MEAN, STD).eval()
    set_gate_mode(model, inference="deterministic")
    with torch.no_grad():
        before = (forward(x).gates != 0).float().sum(1).mean()
    def executed(z):
        with torch.no_grad():
            return (forward(z).gates != 0).float().sum(1)

    adv = pgd(forward, model, x, inflation_objective(), 0.1, steps=5, random_start=False,
              score=executed)
    after = executed(adv).mean()
    assert after > before  # the trained model can be made to run more blocks
    assert (executed(adv) >= executed(x)).all()


def test_eot_with_one_sample_equals_fgsm(trained):
    _, model, x, y = trained
    forward = PixelModel(model, MEAN, STD).eval()
    runs = []
    for samples in (None, 1):
        set_gate_mode(model, inference="stochastic", generator=torch.Generator().manual_seed(3))
        kwargs = {} if samples is None else {"samples": samples}
        runs.append(fgsm(forward, model, x, cross_entropy_objective(y), 0.05, **kwargs))
    assert torch.equal(runs[0], runs[1])
    set_gate_mode(model, inference="deterministic")


def test_attack_pipeline_and_report(trained, tmp_path, capsys):
    root, _, _, _ = trained
    settings = AttackSettings(eps=(0.0, 0.1), eot=2, pgd_steps=2, limit=32, batch_size=16)
    result = attack_checkpoints([str(root / "aig" / "last.pt"), str(root / "dense" / "last.pt")],
                                tmp_path, settings)
    modes = [(m["model"], m["mode"]) for m in result["models"]]
    assert modes == [("aig_resnet20_cifar", "deterministic"),
                     ("aig_resnet20_cifar", "stochastic"), ("resnet20_cifar", "dense")]
    stochastic = result["models"][1]
    assert {"fgsm", "fgsm_jpeg", "pgd", "pgd_jpeg", "fgsm_eot", "fgsm_eot_jpeg"} <= set(stochastic)
    assert stochastic["fgsm"][0] == pytest.approx(stochastic["fgsm_eot"][0])  # eps 0: no attack
    gates = stochastic["gate_attacks"]
    assert {"clean", "inflation", "flip", "macs_increase"} <= set(gates)
    dense_28 = profile_macs(load_model(str(root / "dense" / "last.pt")), 28).dense
    assert result["models"][0]["gate_attacks"]["clean"]["macs_mean"] <= dense_28 * 1.001
    assert len(stochastic["rates"]["before"]) == 9
    assert "claim" in result["verdict"]["text"]
    saved = json.loads((tmp_path / "attack.json").read_text())
    assert saved["verdict"] == result["verdict"]
    html = (tmp_path / "attack_report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Robustness" in html
    assert main(["attack", str(root / "aig" / "last.pt"), "--eps", "0,2"]) == 2
    assert "epsilon must be in [0, 1]" in capsys.readouterr().err
