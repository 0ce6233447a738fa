"""The hand-written autograd of the gated path against autograd's own formulas."""

import pytest
import torch

from aignet.nn import kernels
from aignet.nn.gated_ops import gated_merge, spatial_mean


def _reference_merge(s, r, g):
    return torch.relu(s + g.to(r.dtype).view(-1, 1, 1, 1) * r)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gated_merge_matches_autograd_in_float64(channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    s, r = (torch.randn(4, 6, 5, 5, dtype=torch.float64).to(memory_format=fmt) for _ in "sr")
    g = torch.tensor([0.0, 1.0, 0.3, 1.0], dtype=torch.float64)
    ours = [t.clone().requires_grad_() for t in (s, r, g)]
    ref = [t.clone().requires_grad_() for t in (s, r, g)]
    weight = torch.randn(4, 6, 5, 5, dtype=torch.float64)
    (gated_merge(*ours) * weight).sum().backward()
    (_reference_merge(*ref) * weight).sum().backward()
    assert torch.allclose(gated_merge(s, r, g), _reference_merge(s, r, g))
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-12)


def test_gated_merge_passes_gradcheck():
    args = [torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True),
            torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True),
            torch.rand(2, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(gated_merge, args)


def test_gated_merge_bf16_channels_last_close_to_float32():
    # Inputs exactly representable in bf16, so only the arithmetic differs.
    s, r = (torch.randn(8, 16, 8, 8).bfloat16().float().to(memory_format=torch.channels_last)
            for _ in "sr")
    g = (torch.rand(8) > 0.5).float().requires_grad_()
    out = gated_merge(s.bfloat16(), r.bfloat16(), g)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    (out.float() * s).sum().backward()
    g_ref = g.detach().clone().requires_grad_()
    (_reference_merge(s, r, g_ref) * s).sum().backward()
    assert torch.allclose(g.grad, g_ref.grad, rtol=0.02, atol=0.2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_spatial_mean_value_and_gradient(dtype, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 5, 6, 7).to(dtype=dtype, memory_format=fmt).requires_grad_()
    pooled = spatial_mean(x)
    assert pooled.dtype == torch.float32 and pooled.shape == (3, 5)
    ref = x.detach().float().mean(dim=(2, 3))
    assert torch.allclose(pooled, ref, atol=1e-2 if dtype == torch.bfloat16 else 1e-6)
    weight = torch.randn(3, 5)
    (pooled * weight).sum().backward()
    expected = (weight / 42)[:, :, None, None].expand(3, 5, 6, 7)
    assert x.grad.dtype == dtype
    assert torch.allclose(x.grad.float(), expected, rtol=1e-2)


@pytest.mark.parametrize("channels_last", [False, True])
def test_spatial_mean_bf16_gradient_is_materialised_in_the_input_layout(channels_last):
    # Autograd adds it to the other gradients of x: a dense map in x's layout keeps that fast.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 4, 3, 5).to(dtype=torch.bfloat16, memory_format=fmt).requires_grad_()
    (grad,) = torch.autograd.grad(spatial_mean(x), x, torch.randn(2, 4))
    assert 0 not in grad.stride() and grad.is_contiguous(memory_format=fmt)


def test_gated_merge_takes_a_strided_gate_column():
    # The training gate returns a column of its (B, 2) sample.
    s, r = torch.randn(2, 4, 3, 6, 6).unbind(0)
    sample = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.0, 1.0]])
    g = sample[:, 1]
    assert g.stride() == (2,)
    assert torch.allclose(gated_merge(s, r, g), _reference_merge(s, r, g.contiguous()))


# The compiled merge (csrc/gated_merge.cpp) against the PyTorch reference path.

def _fused_available() -> bool:
    return kernels.load() is not None


fused = pytest.mark.skipif(not _fused_available(),
                           reason="the C++ kernels did not build (no compiler or ninja)")
_real_load = kernels.load


def _merge_and_grads(s, r, g, weight, mean_weight, use_kernels, monkeypatch):
    """Output, spatial mean of the output and the gradients of a loss using both."""
    monkeypatch.setattr(kernels, "load", _real_load if use_kernels else lambda: None)
    s, r, g = (t.clone().requires_grad_() for t in (s, r, g))
    out = gated_merge(s, r, g)
    mean = spatial_mean(out)
    loss = (out.float() * weight).sum() + (mean * mean_weight).sum()
    loss.backward()
    return out.detach(), mean.detach(), s.grad, r.grad, g.grad


@fused
# 6: the scalar tail of the vector loops; 16, 32, 64: the register row kernels of channels-last
# maps; 24: channels-last without one (the per-position segments).
@pytest.mark.parametrize("channels", [6, 16, 24, 32, 64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_merge_matches_the_reference_in_float32(channels, channels_last, monkeypatch):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    s, r = (torch.randn(5, channels, 5, 7).to(memory_format=fmt) for _ in "sr")
    g = torch.tensor([0.0, 1.0, 0.3, 1.0, 0.0])
    weight, mean_weight = torch.randn(5, channels, 5, 7), torch.randn(5, channels)
    ours = _merge_and_grads(s, r, g, weight, mean_weight, True, monkeypatch)
    ref = _merge_and_grads(s, r, g, weight, mean_weight, False, monkeypatch)
    assert ours[0].is_contiguous(memory_format=fmt)
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


@fused
@pytest.mark.parametrize("channels", [16, 24, 64])
def test_fused_merge_matches_the_reference_in_bf16(channels, monkeypatch):
    s, r = (torch.randn(8, channels, 8, 8).bfloat16().to(memory_format=torch.channels_last)
            for _ in "sr")
    g = (torch.rand(8) > 0.5).float()
    weight, mean_weight = torch.randn(8, channels, 8, 8), torch.randn(8, channels)
    ours = _merge_and_grads(s, r, g, weight, mean_weight, True, monkeypatch)
    ref = _merge_and_grads(s, r, g, weight, mean_weight, False, monkeypatch)
    assert ours[0].dtype == torch.bfloat16
    assert torch.equal(ours[0], ref[0])  # one rounding of the same float32 value
    # The reference rounds its products to bf16 before summing them (the gate's gradient sums
    # C*H*W of them); the kernel sums in float32: within 1% of each tensor's range.
    for a, b in zip(ours[1:], ref[1:], strict=True):
        a, b = a.float(), b.float()
        atol = 0.01 * b.abs().max().item()
        assert torch.allclose(a, b, rtol=0.02, atol=atol), (a - b).abs().max()


@fused
def test_fused_merge_output_carries_its_mean_until_changed():
    s, r = torch.randn(2, 3, 4, 6, 6).unbind(0)
    with torch.no_grad():
        out = gated_merge(s, r, torch.ones(3))
        assert spatial_mean(out) is out._aignet_spatial_mean[0]
        out.mul_(2)  # the carried mean no longer describes the map
        assert torch.allclose(spatial_mean(out), out.mean(dim=(2, 3)), atol=1e-6)


@fused
def test_fused_merge_gives_the_reference_gradients_of_a_gated_model(monkeypatch):
    import aignet

    def grads(use_kernels):
        monkeypatch.setattr(kernels, "load", _real_load if use_kernels else lambda: None)
        torch.manual_seed(0)
        model = aignet.create_model("aig_resnet20_cifar").to(memory_format=torch.channels_last)
        x = torch.randn(6, 3, 32, 32).to(memory_format=torch.channels_last)
        out = model(x)
        loss = out.logits.square().sum() + sum(g.sum() for g in out.gates)
        loss.backward()
        return {n: p.grad for n, p in model.named_parameters()}

    ours, ref = grads(True), grads(False)
    for name, grad in ref.items():
        assert torch.allclose(ours[name], grad, rtol=1e-3, atol=1e-5), name


def test_kernels_off_runs_the_reference(monkeypatch):
    monkeypatch.setenv("AIGNET_KERNELS", "off")
    monkeypatch.setattr(kernels, "_loaded", {})
    assert kernels.load() is None
    s, r = torch.randn(2, 2, 3, 4, 4).unbind(0)
    g = torch.tensor([1.0, 0.0])
    assert torch.allclose(gated_merge(s, r, g), _reference_merge(s, r, g))


def test_a_failed_build_warns_once_and_falls_back(monkeypatch):
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("compiler exploded")

    monkeypatch.setattr(kernels, "_loaded", {})
    monkeypatch.setattr(kernels.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(cpp_extension, "load", broken)
    with pytest.warns(RuntimeWarning, match="did not build"):
        assert kernels.load() is None
    assert kernels.load() is None  # remembered: no second attempt or warning
