"""Every registered model: forward contract, gradients, and the architecture details."""

import pytest
import torch

import aignet
from aignet.models.resnet import ModelOutput

# Small inputs keep the whole sweep fast on 2 CPU cores.
SMALL_INPUT = {"cifar": 16, "imagenet": 64}


def _small(name):
    return SMALL_INPUT["cifar" if "cifar" in name else "imagenet"]


@pytest.mark.parametrize("name", aignet.list_models())
def test_forward_backward_every_model(name):
    model = aignet.create_model(name, num_classes=7)
    batch = 16 if "cifar" in name else 8
    x = torch.randn(batch, 3, _small(name), _small(name))
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (batch, 7)
    assert out.gates.shape == (batch, model.num_blocks)
    assert torch.isfinite(out.logits).all()
    loss = aignet.AIGLoss(model.target_rates)(out.logits, out.gates, torch.randint(0, 7, (batch,)))
    loss.total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", ["aig_resnet20_cifar", "aig_resnet18"])
def test_eval_gates_are_the_execution_record(name):
    model = aignet.create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(4, 3, _small(name), _small(name)))
    gated = torch.tensor(model.gated)
    assert set(out.gates[:, gated].unique().tolist()) <= {0.0, 1.0}
    assert (out.gates[:, ~gated] == 1).all()


def test_train_gates_are_differentiable_samples():
    model = aignet.create_model("aig_resnet20_cifar").train()
    out = model(torch.randn(8, 3, 16, 16))
    assert out.gates.requires_grad
    assert set(out.gates.unique().tolist()) <= {0.0, 1.0}


def test_plain_model_reports_all_blocks_executed():
    model = aignet.create_model("resnet20_cifar").eval()
    out = model(torch.randn(3, 3, 16, 16))
    assert torch.equal(out.gates, torch.ones(3, 9))
    assert model.gated == (False,) * 9


@pytest.mark.parametrize("name,params", [
    ("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032),
    ("resnet101", 44_549_160), ("resnet152", 60_192_808),
])
def test_imagenet_parameter_counts_equal_torchvision(name, params):
    model = aignet.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params


def test_cifar_resnet110_structure():
    model = aignet.create_model("resnet110_cifar")
    assert model.num_blocks == 54
    assert sum(p.numel() for p in model.parameters()) == 1_727_962  # He et al.: 1.7M
    with_b = aignet.create_model("resnet110_cifar", shortcut="B")
    assert with_b.layer2[0].downsample[0].kernel_size == (1, 1)
    assert not list(model.layer2[0].downsample.parameters())  # option A: parameter-free


def _copy_dense_weights(src, dst):
    missing = aignet.load_resnet_weights(dst, src.state_dict())
    assert missing and all(".gate." in k for k in missing)


@pytest.mark.parametrize("plain,gated,size", [
    ("resnet32_cifar", "aig_resnet32_cifar", 32), ("resnet50", "aig_resnet50", 64),
])
def test_all_mode_equals_plain_resnet_with_copied_weights(plain, gated, size):
    dense = aignet.create_model(plain)
    model = aignet.create_model(gated)
    dense.train()
    dense(torch.randn(8, 3, size, size))  # non-trivial BN running statistics
    _copy_dense_weights(dense, model)
    dense.eval()
    aignet.set_gate_mode(model.eval(), inference="all")
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model(x).logits, dense(x).logits, atol=1e-5)


def test_expected_mode_scales_each_branch_by_its_tracked_rate():
    model = aignet.create_model("aig_resnet20_cifar").eval()
    rates = torch.linspace(0.1, 0.9, 9)
    for gate, rate in zip(aignet.nn.gates.iter_gates(model), rates, strict=True):
        gate.running_rate.fill_(rate)
    x = torch.randn(3, 3, 16, 16)
    aignet.set_gate_mode(model, inference="expected")
    with torch.no_grad():
        out = model(x)
        h = model.forward_stem(x)
        for block, rate in zip(model.blocks(), rates, strict=True):
            h = block.merge(block.shortcut(h), rate * block.residual(h))
        manual = model.forward_head(h)
    assert torch.allclose(out.logits, manual, atol=1e-5)
    assert torch.allclose(out.gates, rates.expand(3, 9))


def test_torchvision_style_state_dict_loads_into_aig_resnet50():
    dense = aignet.create_model("resnet50")
    state = dense.state_dict()
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.weight", "layer4.2.conv3.weight", "fc.bias"} <= set(state)
    model = aignet.create_model("aig_resnet50")
    missing = aignet.load_resnet_weights(model, state)
    gated_blocks = [i for i, g in enumerate(model.gated) if g]
    # fc1.weight, bn.{weight,bias,running_mean,running_var,num_batches_tracked}, fc2.{weight,
    # bias}, running_rate
    assert len(missing) == len(gated_blocks) * 9
    assert torch.equal(model.layer3[1].conv2.weight, dense.layer3[1].conv2.weight)
    bad = dict(state, extra=torch.zeros(1))
    with pytest.raises(ValueError, match="do not belong"):
        aignet.load_resnet_weights(model, bad)


def test_target_presets_from_the_original_work():
    m50 = aignet.create_model("aig_resnet50", target_rates="aig50:0.4")
    assert m50.target_rates == (1, 1, 0.8, 1, 0.4, 0.4, 0.4, 1, 0.4, 0.4, 0.4, 0.4, 0.4, 1, 0.7, 1)
    m101 = aignet.create_model("aig_resnet101", target_rates="aig101:0.3")
    assert m101.target_rates == (1.0,) * 8 + (0.3,) * 25
    assert sum(m101.gated) == 25
    m34 = aignet.create_model("aig_resnet34", target_rates="stage:0.5")
    assert [i for i, t in enumerate(m34.target_rates) if t == 1] == [0, 3, 7, 13]


def test_target_one_means_no_gate():
    rates = [1.0] + [0.6] * 8
    model = aignet.create_model("aig_resnet20_cifar", target_rates=rates)
    assert model.layer1[0].gate is None and model.gated == (False,) + (True,) * 8
    assert "layer1.0.gate.fc1.weight" not in model.state_dict()


def test_grayscale_input():
    model = aignet.create_model("aig_resnet20_cifar", in_chans=1).eval()
    assert model(torch.randn(2, 1, 28, 28)).logits.shape == (2, 10)


@pytest.mark.parametrize("kwargs,match", [
    ({"target_rates": 1.2}, r"target rate must be in \[0, 1\], got 1.2"),
    ({"target_rates": -0.1}, r"must be in \[0, 1\]"),
    ({"target_rates": [0.5] * 3}, "target_rates has 3 entries but the model has 9"),
    ({"target_rates": "aig50:0.5"}, "preset 'aig50' is for 16 residual blocks"),
    ({"target_rates": "fancy:0.5"}, "unknown target preset"),
    ({"shortcut": "C"}, "unknown shortcut"),
    ({"bogus": 1}, "unexpected keyword"),
])
def test_bad_arguments_raise_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        aignet.create_model("aig_resnet20_cifar", **kwargs)


def test_unknown_model_and_dense_targets():
    with pytest.raises(ValueError, match="unknown model 'aig_resnet51'.*did you mean"):
        aignet.create_model("aig_resnet51")
    with pytest.raises(ValueError, match="dense model and takes no target_rates"):
        aignet.create_model("resnet50", target_rates=0.5)


def test_wrong_input_channels_and_rank():
    model = aignet.create_model("aig_resnet20_cifar")
    with pytest.raises(ValueError, match="expects 3-channel images, got 1 channels"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="4-D image batch"):
        model(torch.randn(3, 32, 32))


def test_stochastic_depth_survival_schedule_and_test_scaling():
    model = aignet.create_model("stochdepth_resnet110_cifar").eval()
    survival = [b.gate.survival for b in model.blocks()]
    assert survival[0] == pytest.approx(1 - 0.5 / 54) and survival[-1] == pytest.approx(0.5)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 16, 16))
    assert torch.allclose(out.gates[0], torch.tensor(survival))


def test_zero_init_residual_zeroes_last_bn():
    model = aignet.create_model("resnet50", zero_init_residual=True)
    assert not model.layer1[0].bn3.weight.any()
