import math

import pytest
import torch

import aignet
from aignet.nn.gates import EXECUTE, Gate, set_gate_mode, threshold_logit


def _gate(channels=8):
    gate = Gate(channels)
    gate.train()
    gate(torch.randn(64, channels, 4, 4))  # BN statistics
    return gate.eval()


def test_init_opening_rate_near_085():
    gate = Gate(16).eval()
    p = torch.softmax(gate.scores(torch.randn(4096, 16, 8, 8)), -1)[:, EXECUTE]
    assert 0.84 <= p.mean().item() <= 0.88
    gate.train()
    rate = torch.stack([gate(torch.randn(256, 16, 8, 8)).mean() for _ in range(40)]).mean()
    assert 0.84 <= rate.item() <= 0.88


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_deterministic_threshold_semantics(threshold):
    gate = _gate()
    with torch.no_grad():
        gate.fc2.weight.normal_(std=1.0)  # spread the probabilities over (0, 1)
    set_gate_mode(gate, inference="deterministic", threshold=threshold)
    x = torch.randn(512, 8, 4, 4)
    with torch.no_grad():
        p = torch.softmax(gate.scores(x), -1)[:, EXECUTE]
        g = gate(x)
    assert torch.equal(g, (p > threshold).float())
    if threshold == 0.0:
        assert g.all()
    if threshold == 1.0:
        assert not g.any()
    if threshold == 0.5:
        assert torch.equal(g.bool(), gate.scores(x).argmax(-1) == EXECUTE)


def test_threshold_logit_edges():
    assert threshold_logit(0.0) == -math.inf and threshold_logit(1.0) == math.inf
    assert threshold_logit(0.5) == 0.0


def test_stochastic_inference_is_gumbel_max_with_generator():
    gate = _gate()
    x = torch.randn(50_000, 8, 1, 1)
    set_gate_mode(gate, inference="stochastic", generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        g1 = gate(x)
        p = torch.softmax(gate.scores(x), -1)[:, EXECUTE]
    assert abs(g1.mean().item() - p.mean().item()) < 0.01
    set_gate_mode(gate, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(g1, gate(x))


def test_expected_and_all_modes():
    gate = _gate()
    gate.running_rate.fill_(0.37)
    x = torch.randn(5, 8, 4, 4)
    assert torch.allclose(set_gate_mode(gate, inference="expected")(x), torch.full((5,), 0.37))
    assert torch.equal(set_gate_mode(gate, inference="all")(x), torch.ones(5))


def test_running_rate_tracks_training_rate_and_is_saved():
    gate = Gate(4, init_rate=0.85)
    with torch.no_grad():
        gate.fc2.bias[EXECUTE] = -20.0  # gate now (almost) never opens
    gate.train()
    for _ in range(100):
        gate(torch.randn(32, 4, 2, 2))
    assert gate.running_rate.item() < 0.01
    assert "running_rate" in gate.state_dict()


def test_soft_training_mode_is_relaxed_and_differentiable():
    gate = Gate(4).train()
    set_gate_mode(gate, train="soft")
    g = gate(torch.randn(64, 4, 2, 2))
    assert ((g > 0) & (g < 1)).all()
    g.sum().backward()
    assert gate.fc2.weight.grad.abs().sum() > 0


def test_hard_training_mode_is_binary_with_gradient():
    gate = Gate(4).train()
    g = gate(torch.randn(64, 4, 2, 2))
    assert set(g.unique().tolist()) <= {0.0, 1.0}
    (g * torch.randn(64)).sum().backward()
    assert gate.fc1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_threshold_training_mode_takes_the_inference_decisions_with_a_gradient(threshold):
    gate = Gate(4).train()
    torch.nn.init.normal_(gate.fc2.weight)  # margins spread around the threshold
    x = torch.randn(256, 4, 2, 2)
    set_gate_mode(gate, train="threshold", threshold=threshold, tau=2.0)
    with torch.no_grad():
        margin = gate.margin(x)  # training-mode BatchNorm, as in the forward below
    decided = (margin > threshold_logit(threshold)).float()
    g = gate(x)
    assert gate.binary and torch.equal(g.detach(), decided)
    assert 0 < decided.mean() < 1  # both decisions occur: the test can tell them apart
    (g * torch.randn(256)).sum().backward()
    assert gate.fc1.weight.grad.abs().sum() > 0 and gate.fc2.weight.grad.abs().sum() > 0


def test_set_gate_mode_reaches_every_gate_and_validates():
    model = aignet.create_model("aig_resnet20_cifar")
    set_gate_mode(model, inference="stochastic", threshold=0.3, tau=0.5)
    gates = list(aignet.nn.gates.iter_gates(model))
    assert len(gates) == 9
    assert all(g.inference == "stochastic" and g.threshold == 0.3 and g.tau == 0.5
               for g in gates)
    with pytest.raises(ValueError, match="threshold must be in"):
        set_gate_mode(model, threshold=1.5)
    with pytest.raises(ValueError, match="unknown inference mode"):
        set_gate_mode(model, inference="greedy")
    with pytest.raises(ValueError, match="unknown train mode"):
        set_gate_mode(model, train="straight")


def test_gate_runs_in_float32_under_autocast():
    gate = _gate()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = gate.scores(torch.randn(4, 8, 4, 4).bfloat16())
    assert scores.dtype == torch.float32


def test_evaluates_gates_names_the_modes_that_pay_for_gates():
    from aignet.nn.gates import INFERENCE_MODES, evaluates_gates

    assert [m for m in INFERENCE_MODES if evaluates_gates(m)] == ["deterministic", "stochastic"]
