"""The compiled training gate head against the module path it stands in for."""

import copy

import pytest
import torch

from aignet.nn import gate_head, kernels
from aignet.nn.gates import Gate

pytestmark = pytest.mark.skipif(kernels.load() is None,
                                reason="the C++ kernels did not build (no compiler or ninja)")


def _run(gate, x, upstream, compiled, monkeypatch):
    """g, the gradients of x and of every gate parameter, and the gate's buffers."""
    monkeypatch.setattr(gate_head, "applies", lambda g, t: compiled)
    x = x.clone().requires_grad_()
    g = gate(x)
    (g * upstream).sum().backward()
    grads = {n: p.grad for n, p in gate.named_parameters()}
    return g.detach(), x.grad, grads, {n: b.clone() for n, b in gate.named_buffers()}


@pytest.mark.parametrize("mode", ["hard", "soft", "threshold"])
@pytest.mark.parametrize("momentum", [0.1, None])  # None: BatchNorm's cumulative average
# (12, 5): the first layer's products as loops; (300, 16): wide enough for at::mm.
@pytest.mark.parametrize("channels, hidden", [(12, 5), (300, 16)])
def test_compiled_gate_head_matches_the_module_path(mode, momentum, channels, hidden, monkeypatch):
    torch.manual_seed(0)
    gate = Gate(channels, hidden=hidden, init_rate=0.6).train()
    gate.bn.momentum = momentum
    with torch.no_grad():  # spread the scores so soft values and decisions vary
        gate.fc2.weight.normal_(std=1.0)
    gate.train_mode, gate.tau, gate.threshold = mode, 0.7, 0.45
    x = torch.randn(9, channels, 4, 4)
    upstream = torch.randn(9)
    results = []
    for compiled in (True, False):
        copy_ = copy.deepcopy(gate)
        copy_.generator = torch.Generator().manual_seed(3)
        for _ in range(2):  # the second step sees updated running statistics
            copy_.zero_grad()
            out = _run(copy_, x, upstream, compiled, monkeypatch)
        results.append(out)
    (g, gx, grads, buffers), (g_ref, gx_ref, grads_ref, buffers_ref) = results
    assert torch.allclose(g, g_ref, atol=1e-6)
    if mode != "soft":
        assert set(g.tolist()) <= {0.0, 1.0} and 0 < g.sum() < 9
    assert torch.allclose(gx, gx_ref, atol=1e-6)
    for name, grad in grads_ref.items():
        assert torch.allclose(grads[name], grad, atol=1e-5), name
    for name, buffer in buffers_ref.items():
        assert torch.allclose(buffers[name].float(), buffer.float(), atol=1e-6), name


def test_the_compiled_head_steps_aside_for_one_image_and_for_hooks():
    gate = Gate(8).train()
    x = torch.randn(4, 8, 3, 3)
    assert gate_head.applies(gate, x)
    assert not gate_head.applies(gate, x[:1])  # BatchNorm1d refuses one image: let it say so
    gate.fc1.register_forward_hook(lambda *args: None)
    assert not gate_head.applies(gate, x)  # hooks must see their module's calls
