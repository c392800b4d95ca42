"""CBDM's class-balancing regulariser against hand-worked numbers (Qin et al., CVPR 2023)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from baselines.cbdm import OtherClassSampler, cbdm_loss, timestep_weight

# Fixed tensors, shape (B=2, C=1, H=1, W=2): two samples of two elements each.
PRED = [[[[1.0, 2.0]]], [[[0.0, -1.0]]]]
OTHER = [[[[0.0, 2.0]]], [[[1.0, 1.0]]]]
TARGET = [[[[1.0, 1.0]]], [[[0.0, 0.0]]]]
T = 1000
STEPS = [500, 250]  # w = t/T * tau = [0.5, 0.25]


def _tensors(requires_grad: bool = False):
    pred = torch.tensor(PRED, requires_grad=requires_grad)
    other = torch.tensor(OTHER, requires_grad=requires_grad)
    return pred, other, torch.tensor(TARGET), torch.tensor(STEPS)


def test_timestep_weight():
    w = timestep_weight(torch.tensor([0, 250, 999]), 1000, tau=2.0)
    assert w.tolist() == pytest.approx([0.0, 0.5, 1.998])
    with pytest.raises(ValueError, match="timesteps must lie in"):
        timestep_weight(torch.tensor([1000]), 1000)


def test_loss_matches_hand_computation():
    # ddpm: squared errors [0, 1, 0, 1] -> mean 0.5
    # (pred - other)^2 per sample: [1, 0] -> 0.5 ; [1, 4] -> 2.5
    # regulariser = commitment = mean(0.5 * 0.5, 0.25 * 2.5) = mean(0.25, 0.625) = 0.4375
    # total = 0.5 + 0.4375 + 0.25 * 0.4375 = 1.046875
    pred, other, target, t = _tensors()
    out = cbdm_loss(pred, other, target, t, num_train_timesteps=T)
    assert float(out.ddpm) == pytest.approx(0.5)
    assert float(out.regulariser) == pytest.approx(0.4375)
    assert float(out.commitment) == pytest.approx(0.4375)
    assert float(out.total) == pytest.approx(1.046875)
    assert out.as_floats()["cbdm_reg"] == pytest.approx(0.4375)


def test_tau_and_gamma_scale_their_terms():
    # tau = 2 doubles both weighted terms: 0.875 each; gamma = 1: total = 0.5 + 0.875 + 0.875
    pred, other, target, t = _tensors()
    out = cbdm_loss(pred, other, target, t, num_train_timesteps=T, tau=2.0, gamma=1.0)
    assert float(out.regulariser) == pytest.approx(0.875)
    assert float(out.total) == pytest.approx(2.25)


def test_timestep_loss_weights_scale_every_term_of_a_sample():
    # m = [2, 4]: ddpm per sample [0.5, 0.5] -> mean(1.0, 2.0) = 1.5
    # regulariser = commitment = mean(2 * 0.5 * 0.5, 4 * 0.25 * 2.5) = mean(0.5, 2.5) = 1.5
    # total = 1.5 + 1.5 + 0.25 * 1.5 = 3.375 (the ratio of the regulariser to the DDPM term
    # of each sample, w_b t/T, is unchanged)
    pred, other, target, t = _tensors()
    out = cbdm_loss(pred, other, target, t, num_train_timesteps=T,
                    timestep_loss_weights=torch.tensor([2.0, 4.0]))
    assert float(out.ddpm) == pytest.approx(1.5)
    assert float(out.regulariser) == pytest.approx(1.5)
    assert float(out.commitment) == pytest.approx(1.5)
    assert float(out.total) == pytest.approx(3.375)
    ones = cbdm_loss(pred, other, target, t, num_train_timesteps=T,
                     timestep_loss_weights=torch.ones(2))
    assert float(ones.total) == pytest.approx(1.046875)  # = no weights
    with pytest.raises(ValueError, match="timestep_loss_weights"):
        cbdm_loss(pred, other, target, t, num_train_timesteps=T,
                  timestep_loss_weights=torch.ones(3))


def test_dropped_conditions_get_no_regulariser_but_count_in_the_mean():
    # sample 1 dropped: regulariser = (0.25 + 0) / 2 = 0.125; total = 0.5 + 0.125 + 0.03125
    pred, other, target, t = _tensors()
    out = cbdm_loss(pred, other, target, t, num_train_timesteps=T,
                    conditioned=torch.tensor([True, False]))
    assert float(out.regulariser) == pytest.approx(0.125)
    assert float(out.commitment) == pytest.approx(0.125)
    assert float(out.total) == pytest.approx(0.65625)
    assert float(out.ddpm) == pytest.approx(0.5)  # the DDPM loss keeps every sample


def test_gradients_match_hand_computation():
    # dL/dpred  = 2 (pred - target) / 4 + w_b / 2 * 2 (pred - other) / 2
    #           = [[0 + 0.25, 0.5 + 0], [0 - 0.125, -0.5 - 0.25]]
    # dL/dother = gamma * w_b / 2 * 2 (other - pred) / 2
    #           = [[-0.0625, 0], [0.03125, 0.0625]]
    pred, other, target, t = _tensors(requires_grad=True)
    out = cbdm_loss(pred, other, target, t, num_train_timesteps=T)
    g_pred, g_other = torch.autograd.grad(out.total, (pred, other))
    assert g_pred.flatten().tolist() == pytest.approx([0.25, 0.5, -0.125, -0.75])
    assert g_other.flatten().tolist() == pytest.approx([-0.0625, 0.0, 0.03125, 0.0625])


def test_stop_gradient_placement():
    # The regulariser moves only the own-class prediction, the commitment only the other one.
    pred, other, target, t = _tensors(requires_grad=True)
    out = cbdm_loss(pred, other, target, t, num_train_timesteps=T)
    g_reg_pred, g_reg_other = torch.autograd.grad(
        out.regulariser, (pred, other), retain_graph=True, allow_unused=True)
    g_com_pred, g_com_other = torch.autograd.grad(
        out.commitment, (pred, other), retain_graph=True, allow_unused=True)
    assert g_reg_other is None and g_com_pred is None
    assert g_reg_pred.abs().sum() > 0 and g_com_other.abs().sum() > 0
    g_ddpm_other = torch.autograd.grad(out.ddpm, other, allow_unused=True)[0]
    assert g_ddpm_other is None


def test_gradient_reaches_shared_weights_through_both_passes():
    # One model predicts both; its weight gradient is the sum of both passes' contributions.
    torch.manual_seed(0)
    emb = torch.nn.Embedding(3, 4)
    x = torch.randn(2, 4)
    y, y_other = torch.tensor([0, 1]), torch.tensor([2, 2])
    target, t = torch.randn(2, 4), torch.tensor([900, 100])
    out = cbdm_loss(x * emb(y), x * emb(y_other), target, t, num_train_timesteps=T)
    (grad,) = torch.autograd.grad(out.total, emb.weight)
    # class 2 appears only as y', so it learns only from the commitment term:
    # d/d e2 of gamma * mean_b(w_b * mean_j (x e_y - x e2)^2) = gamma * w_b/2 * 2 x (x e2 - x e_y)/4
    with torch.no_grad():
        w = torch.tensor([0.9, 0.1])
        e = emb.weight
        expect = sum(0.25 * w[b] / 2 * 2 * x[b] * (x[b] * e[2] - x[b] * e[y[b]]) / 4
                     for b in range(2))
    assert torch.allclose(grad[2], expect, atol=1e-6)


def test_shape_errors_are_clear():
    pred, other, target, t = _tensors()
    with pytest.raises(ValueError, match="pred_other must have shape"):
        cbdm_loss(pred, other[:1], target, t, num_train_timesteps=T)
    with pytest.raises(ValueError, match="one shape"):
        cbdm_loss(pred, other, target[:1], t, num_train_timesteps=T)
    with pytest.raises(ValueError, match="timesteps must have shape"):
        cbdm_loss(pred, other, target, t[:1], num_train_timesteps=T)


def test_other_class_follows_training_frequencies():
    sampler = OtherClassSampler([70, 20, 10])
    assert sampler.probabilities.tolist() == pytest.approx([0.7, 0.2, 0.1])
    draws = sampler.sample(20000, torch.Generator().manual_seed(0))
    observed = torch.bincount(draws, minlength=3).numpy()
    assert chisquare(observed, [14000, 4000, 2000]).pvalue > 1e-3
    assert (observed / 20000).tolist() == pytest.approx([0.7, 0.2, 0.1], abs=0.01)


def test_other_class_uniform_when_fine_tuning():
    sampler = OtherClassSampler([70, 20, 10], uniform=True)
    draws = sampler.sample(30000, torch.Generator().manual_seed(1))
    observed = torch.bincount(draws, minlength=3).numpy()
    assert chisquare(observed).pvalue > 1e-3
    assert (observed / 30000).tolist() == pytest.approx([1 / 3] * 3, abs=0.01)


def test_other_class_sampling_is_seeded_and_validated():
    sampler = OtherClassSampler([5, 0, 5])
    a = sampler.sample(50, torch.Generator().manual_seed(3))
    b = sampler.sample(50, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert 1 not in a.tolist()  # a class with no training image is never drawn
    with pytest.raises(ValueError, match="sum to 0"):
        OtherClassSampler([0, 0])
    with pytest.raises(ValueError, match=">= 0"):
        OtherClassSampler([3, -1])


def test_regulariser_on_a_subset_of_rows():
    # only sample 1 (w = 0.25, (pred - other)^2 per sample 2.5) gets an other-class
    # prediction: regulariser = commitment = 0.25 * 2.5 = 0.625 (mean over the one row);
    # the DDPM term still averages the whole batch (0.5); total = 0.5 + 0.625 + 0.25 * 0.625
    pred, other, target, t = _tensors()
    out = cbdm_loss(pred, other[1:], target, t, num_train_timesteps=T,
                    other_rows=torch.tensor([1]))
    assert float(out.ddpm) == pytest.approx(0.5)
    assert float(out.regulariser) == pytest.approx(0.625)
    assert float(out.commitment) == pytest.approx(0.625)
    assert float(out.total) == pytest.approx(1.28125)
    # both rows listed (in another order, with pred_other in that order) = the full form
    full = cbdm_loss(pred, other[[1, 0]], target, t, num_train_timesteps=T,
                     other_rows=torch.tensor([1, 0]))
    assert float(full.regulariser) == pytest.approx(0.4375)
    with pytest.raises(ValueError, match="pred_other must have shape"):
        cbdm_loss(pred, other, target, t, num_train_timesteps=T, other_rows=torch.tensor([1]))


def test_subset_regulariser_is_unbiased_for_the_full_batch():
    # averaging the one-row estimate over both possible rows gives the full-batch value
    pred, other, target, t = _tensors()
    parts = [float(cbdm_loss(pred, other[[i]], target, t, num_train_timesteps=T,
                             other_rows=torch.tensor([i])).regulariser) for i in (0, 1)]
    assert sum(parts) / 2 == pytest.approx(0.4375)
