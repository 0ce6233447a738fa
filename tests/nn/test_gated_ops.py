"""The hand-written autograd of the gated path against autograd's own formulas."""

import pytest
import torch

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
