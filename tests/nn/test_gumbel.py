import torch

from aignet.nn.gumbel import gumbel_max, gumbel_noise, gumbel_softmax


def test_gumbel_max_frequencies_match_softmax():
    scores = torch.tensor([[0.3, 1.2], [-1.0, 0.5], [2.0, -2.0]])
    draws = 200_000
    gen = torch.Generator().manual_seed(1)
    batch = scores.repeat_interleave(draws, 0)
    sample = gumbel_max(batch, generator=gen).view(3, draws, 2).mean(1)
    expected = torch.softmax(scores, -1)
    assert torch.allclose(sample, expected, atol=0.01), (sample, expected)


def test_gumbel_max_frequencies_three_classes():
    scores = torch.tensor([[0.1, 0.7, -0.4]]).repeat(150_000, 1)
    freq = gumbel_max(scores, generator=torch.Generator().manual_seed(2)).mean(0)
    assert torch.allclose(freq, torch.softmax(scores[0], -1), atol=0.01)


def test_straight_through_gradient_equals_relaxation_gradient():
    scores = torch.randn(64, 2)
    noise = gumbel_noise(scores)
    weights = torch.randn(64, 2)
    for tau in (1.0, 0.5):
        s1 = scores.clone().requires_grad_()
        hard = gumbel_softmax(s1, tau=tau, hard=True, noise=noise)
        (hard * weights).sum().backward()
        s2 = scores.clone().requires_grad_()
        soft = gumbel_softmax(s2, tau=tau, hard=False, noise=noise)
        (soft * weights).sum().backward()
        assert torch.allclose(s1.grad, s2.grad, atol=1e-6)
        assert s1.grad.abs().sum() > 0


def test_hard_forward_is_one_hot_argmax_of_perturbed_scores():
    scores = torch.randn(128, 2)
    noise = gumbel_noise(scores)
    hard = gumbel_softmax(scores, hard=True, noise=noise)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.argmax(-1), (scores + noise).argmax(-1))
    assert torch.allclose(hard.sum(-1), torch.ones(128))


def test_generator_makes_noise_reproducible():
    x = torch.zeros(10, 2)
    a = gumbel_noise(x, torch.Generator().manual_seed(5))
    b = gumbel_noise(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_temperature_must_be_positive():
    import pytest

    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax(torch.zeros(1, 2), tau=0.0)
