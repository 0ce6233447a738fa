import pytest
import torch

from aignet.nn.losses import (
    AIGLoss,
    annealed_targets,
    distillation_loss,
    execution_rates,
    target_rate_loss,
)


def test_hand_computed_value():
    rates = torch.tensor([0.9, 0.5, 1.0, 0.2])
    targets = [0.7, 0.7, 1.0, 0.4]
    # gated layers 0, 1, 3: (0.2^2 + 0.2^2 + 0.2^2) / 3 = 0.04; times lambda 2.
    assert target_rate_loss(rates, targets).item() == pytest.approx(0.08)
    assert target_rate_loss(rates, targets, weight=1.0).item() == pytest.approx(0.04)


def test_layers_with_target_one_are_excluded():
    targets = [1.0, 0.5]
    low = target_rate_loss(torch.tensor([0.0, 0.5]), targets)
    assert low.item() == 0.0  # layer 0 far from 1 but excluded
    assert target_rate_loss(torch.tensor([0.3, 0.3]), [1.0, 1.0]).item() == 0.0


def test_rates_are_batch_means_and_gradient_flows():
    gates = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    rates = execution_rates(gates)
    assert torch.allclose(rates, torch.tensor([0.75, 0.75]))
    loss = target_rate_loss(rates, [0.5, 1.0])
    assert loss.item() == pytest.approx(2 * 0.25 ** 2)
    loss.backward()
    # d/dg_b0 of 2 * (mean - 0.5)^2 = 2 * 2 * 0.25 / 4; layer 1 has no gradient.
    assert torch.allclose(gates.grad[:, 0], torch.full((4,), 0.25))
    assert torch.equal(gates.grad[:, 1], torch.zeros(4))


def test_aig_loss_combines_terms():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    gates = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    terms = AIGLoss([0.7, 1.0])(logits, gates, labels)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert terms.classification.item() == pytest.approx(ce.item())
    assert terms.target_rate.item() == pytest.approx(2 * (0.5 - 0.7) ** 2)
    assert terms.total.item() == pytest.approx(ce.item() + 2 * 0.04)


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="3 execution rates but 2 target rates"):
        target_rate_loss(torch.zeros(3), [0.5, 0.5])


def test_distillation_loss_is_zero_for_equal_logits_and_positive_otherwise():
    logits = torch.randn(8, 10)
    assert distillation_loss(logits, logits, 2.0).abs() < 1e-6
    assert distillation_loss(logits, torch.randn(8, 10), 2.0) > 0.01


def test_aig_loss_mixes_cross_entropy_and_distillation():
    logits, teacher = torch.randn(8, 10), torch.randn(8, 10)
    labels, gates = torch.randint(0, 10, (8,)), torch.ones(8, 3)
    loss = AIGLoss([1.0, 1.0, 1.0], distill_weight=0.7, temperature=2.0)
    terms = loss(logits, gates, labels, teacher_logits=teacher)
    kd = distillation_loss(logits, teacher, 2.0)
    assert torch.allclose(terms.total, 0.3 * terms.classification + 0.7 * kd)
    assert torch.allclose(terms.distillation, kd)
    assert loss(logits, gates, labels).distillation is None  # no teacher, no term


def test_annealed_targets_move_gated_layers_only():
    targets = torch.tensor([1.0, 0.5, 0.3])
    assert torch.allclose(annealed_targets(targets, 0.85, 0.0), torch.tensor([1.0, 0.85, 0.85]))
    assert torch.allclose(annealed_targets(targets, 0.85, 0.5), torch.tensor([1.0, 0.675, 0.575]))
    assert torch.allclose(annealed_targets(targets, 0.85, 3.0), targets)


def test_topk_errors_of_hand_made_logits():
    from aignet.training.evaluate import topk_errors

    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 1])  # right; in neither top 2; second best
    top1, top2 = topk_errors(logits, labels, (1, 2))
    assert top1 == pytest.approx(2 / 3) and top2 == pytest.approx(1 / 3)
