import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import aignet
from aignet.engine.flops import profile_macs


@pytest.mark.parametrize("name,expected", [
    ("resnet110_cifar", 253e6), ("resnet50", 4.09e9), ("resnet101", 7.8e9),
])
def test_dense_macs_match_the_literature(name, expected):
    profile = profile_macs(aignet.create_model(name))
    assert profile.dense == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("name", ["aig_resnet110_cifar", "aig_resnet50", "preact_resnet110_cifar",
                                  "aig_wide_resnet_cifar"])
def test_parts_add_up_to_a_whole_model_count(name):
    model = aignet.create_model(name).eval()
    size = 32 if "cifar" in name else 112
    profile = profile_macs(model, size)
    aignet.set_gate_mode(model, inference="all")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    assert profile.dense == counter.get_total_flops() // 2


def test_gate_overhead_is_tiny():
    cifar = profile_macs(aignet.create_model("aig_resnet110_cifar"))
    assert 0.005 < cifar.gate_percent < 0.02  # papers: ~0.01%
    imagenet = profile_macs(aignet.create_model("aig_resnet50"))
    assert 0 < imagenet.gate_percent < 0.05
    assert profile_macs(aignet.create_model("resnet50")).gate_total == 0


def test_per_image_macs_formula():
    model = aignet.create_model("aig_resnet20_cifar", target_rates=[1.0] + [0.5] * 8)
    p = profile_macs(model)
    residual = [b.residual for b in p.blocks]
    executed = torch.zeros(3, 9)
    executed[0] = 1
    executed[2, [0, 4]] = 1
    macs = p.per_image(executed)
    assert macs[0].item() == p.dense + p.gate_total
    assert macs[1].item() == p.stem + p.head + sum(b.shortcut for b in p.blocks) + p.gate_total
    assert macs[2].item() == p.fixed + residual[4]
    assert p.fixed == macs[1].item() + residual[0]  # block 0 is ungated, counted in fixed
    assert p.per_image(torch.ones(1, 9), gates_evaluated=False).item() == p.dense
    with pytest.raises(ValueError, match=r"shape \(B, 9\)"):
        p.per_image(torch.ones(2, 4))


def test_profile_leaves_model_state_alone():
    model = aignet.create_model("aig_resnet20_cifar").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile_macs(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
