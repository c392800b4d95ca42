"""FairGen's mechanisms against hand computations: Diffusion-DPO, the as-coded preference
loss, CBSQ (= the CBDM regulariser), the SQRS and gradient-aware sampler weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from benchmark.diffusion import (
    GradientAwareWeights,
    IndexSchedule,
    OtherClassSampler,
    as_coded_preference_loss,
    cbdm_loss,
    class_balanced_weights,
    diffusion_dpo_loss,
    draw_other_classes,
    output_gradient_norm,
)


def test_dpo_is_log2_when_policy_equals_reference():
    m_w, m_l = torch.tensor([0.3, 0.1, 0.7]), torch.tensor([0.2, 0.5, 0.7])
    out = diffusion_dpo_loss(m_w, m_l, m_w.clone(), m_l.clone(), beta=5000)
    assert float(out.total) == pytest.approx(math.log(2), abs=1e-7)


def test_dpo_hand_value():
    # (m_w - r_w) - (m_l - r_l) = 0.001 - (-0.001) = 0.002; inside = -500 * 0.002 = -1
    # loss = -log sigmoid(-1) = log(1 + e) = 1.3132617
    out = diffusion_dpo_loss(torch.tensor([0.101]), torch.tensor([0.199]),
                             torch.tensor([0.100]), torch.tensor([0.200]), beta=1000)
    assert float(out.total) == pytest.approx(math.log(1 + math.e), rel=1e-5)
    assert float(out.implicit_acc) == 0.0


def test_dpo_gradient_lowers_winner_and_raises_loser_mse():
    # the loss's gradient in the MSEs: dL/dm_w = beta/2 sigmoid(0) = beta/4 > 0, dL/dm_l < 0
    r_w, r_l = torch.tensor([0.4]), torch.tensor([0.6])
    mw, ml = r_w.clone().requires_grad_(True), r_l.clone().requires_grad_(True)
    diffusion_dpo_loss(mw, ml, r_w, r_l, beta=10).total.backward()
    assert mw.grad.item() == pytest.approx(2.5) and ml.grad.item() == pytest.approx(-2.5)
    # a "denoiser" with separate parameters for the two images, f = theta_k * x_k, started
    # at the reference: one gradient step lowers the winner's MSE and raises the loser's
    torch.manual_seed(0)
    x, y = torch.randn(2, 8), torch.randn(2, 8)
    theta = torch.tensor([0.3, 0.3], requires_grad=True)

    def mses(th):
        return ((th[:, None] * x - y) ** 2).mean(1)

    ref = mses(torch.tensor([0.3, 0.3]))
    m = mses(theta)
    diffusion_dpo_loss(m[:1], m[1:], ref[:1], ref[1:], beta=10).total.backward()
    with torch.no_grad():
        after = mses(theta - 0.01 * theta.grad)
    assert after[0] < ref[0] and after[1] > ref[1]


def test_as_coded_preference_loss_hand_value():
    # inside = 0.5 * (m_l - m_w) = [0.2, 0.0]
    # -log sigmoid(0.2) = log(1 + e^-0.2) = 0.5981389, -log sigmoid(0) = log 2 = 0.6931472
    # pref = mean = 0.6456430; + mean(m_w) = 0.3 -> 0.9456430
    out = as_coded_preference_loss(torch.tensor([0.2, 0.4]), torch.tensor([0.6, 0.4]),
                                   beta=0.5)
    assert float(out.preference) == pytest.approx(0.6456430, rel=1e-6)
    assert float(out.total) == pytest.approx(0.9456430, rel=1e-6)
    assert float(out.implicit_acc) == 0.5
    with pytest.raises(ValueError, match="share one shape"):
        as_coded_preference_loss(torch.zeros(2), torch.zeros(3), beta=0.5)


def test_cbsq_as_coded_equals_cbdm_regulariser():
    """FairGen's code writes CBSQ with element-wise weights t/T broadcast over (C, H, W);
    written out here independently, it equals benchmark's CBDM regulariser."""
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(4, 2, 3, 3, generator=g)
    other = torch.randn(4, 2, 3, 3, generator=g)
    target = torch.randn(4, 2, 3, 3, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    T, tau = 1000, 1.0
    weight = t[:, None, None, None] / T * tau
    loss_ddpm = F.mse_loss(pred, target, reduction="none").mean()
    loss_reg = (weight * F.mse_loss(pred, other.detach(), reduction="none")).mean()
    loss_com = (weight * F.mse_loss(pred.detach(), other, reduction="none")).mean()
    as_coded = loss_ddpm + loss_reg + 1 / 4 * loss_com
    ours = cbdm_loss(pred, other, target, t, num_train_timesteps=T, tau=tau, gamma=0.25)
    assert float(ours.total) == pytest.approx(float(as_coded), rel=1e-6)


def test_distinct_other_class_never_equals_own_and_follows_restricted_law():
    sampler = OtherClassSampler([1, 1, 1, 1], uniform=True)
    own = torch.zeros(4000, dtype=torch.long)
    other = draw_other_classes(own, sampler, distinct=True,
                               generator=torch.Generator().manual_seed(0))
    assert not bool((other == 0).any())
    counts = np.bincount(other.numpy(), minlength=4)[1:]
    assert chisquare(counts).pvalue > 1e-3  # uniform over the 3 other classes
    same = draw_other_classes(own, sampler, distinct=False,
                              generator=torch.Generator().manual_seed(0))
    assert bool((same == 0).any())  # the code's (and CBDM's) y' may equal y


def test_sqrs_sampler_frequencies_chi_square():
    # classes of sizes 1, 4, 16: SQRS draws class c with probability sqrt(n_c) / sum = 1:2:4
    class_ids = np.repeat([0, 1, 2], [1, 4, 16])
    sched = IndexSchedule(len(class_ids), 700, seed=1,
                          weights=class_balanced_weights(class_ids, 0.5))
    drawn = class_ids[np.concatenate([sched(s) for s in range(10)])]
    counts = np.bincount(drawn, minlength=3)
    expected = np.array([1, 2, 4]) / 7 * counts.sum()
    assert chisquare(counts, expected).pvalue > 1e-3
    # a step's own weights override the fixed ones (the gradient-aware hook)
    only_last = sched(0, np.where(class_ids == 2, 1.0, 0.0))
    assert set(class_ids[only_last].tolist()) == {2}


def test_gradient_aware_weights_on_known_norms():
    w = GradientAwareWeights([4, 1], alpha=1.0, window=2)
    np.testing.assert_allclose(w.class_weights(), [0.5, 1.0])  # no observation: SQRS
    w.observe([0, 0, 1], [1.0, 3.0, 4.0])  # G = [2, 4], mean 3
    # w_0 = 4^-1/2 * 2/3 = 1/3, w_1 = 1 * 4/3
    np.testing.assert_allclose(w.class_weights(), [1 / 3, 4 / 3])
    w.observe([0], [5.0])  # window: G_0 = (1 + 3 + 5) / 3 = 3, G_1 = 4, mean 3.5
    np.testing.assert_allclose(w.class_weights(), [0.5 * 3 / 3.5, 4 / 3.5])
    w.observe([1], [1.0])  # the first step leaves the window: G_0 = 5, G_1 = 1, mean 3
    np.testing.assert_allclose(w.class_weights(), [0.5 * 5 / 3, 1 / 3])
    sq = GradientAwareWeights([4, 1], alpha=2.0, window=5)
    sq.observe([0, 1], [1.0, 3.0])  # G = [1, 3], mean 2: (1/2)^2 and (3/2)^2
    np.testing.assert_allclose(sq.class_weights(), [0.5 * 0.25, 2.25])
    np.testing.assert_allclose(sq.example_weights(np.array([1, 0, 1])), [2.25, 0.125, 2.25])
    again = GradientAwareWeights([4, 1], alpha=2.0, window=5)
    again.load_state_dict(sq.state_dict())
    np.testing.assert_allclose(again.class_weights(), sq.class_weights())


def test_output_gradient_norm_matches_autograd():
    pred = torch.randn(3, 2, 4, 4, requires_grad=True)
    target = torch.randn(3, 2, 4, 4)
    per = (pred - target).pow(2).flatten(1).mean(1)
    grads = torch.autograd.grad(per.sum(), pred)[0]
    expected = grads.flatten(1).norm(dim=1)
    got = output_gradient_norm(per, numel=2 * 4 * 4)
    torch.testing.assert_close(got, expected)


def test_dpo_implicit_accuracy_is_the_share_of_pairs_the_policy_favours_more():
    # (m_l - r_l) - (m_w - r_w) > 0 per pair, written out independently
    g = torch.Generator().manual_seed(3)
    m_w, m_l, r_w, r_l = torch.rand(4, 50, generator=g)
    out = diffusion_dpo_loss(m_w, m_l, r_w, r_l, beta=500)
    hand = sum(float((ml - rl) - (mw - rw)) > 0 for mw, ml, rw, rl in zip(m_w, m_l, r_w, r_l,
                                                                          strict=True)) / 50
    assert 0 < hand < 1 and float(out.implicit_acc) == pytest.approx(hand)


class _Out:
    def __init__(self, sample):
        self.sample = sample


class _WinnerDenoiser(torch.nn.Module):
    """Predicts the noise exactly for x0 = W (the winners' latent): eps = (x_t - sqrt(abar_t)
    W) / sqrt(1 - abar_t); for a loser x0 = L its MSE is abar / (1 - abar) mean((L - W)^2)."""

    def __init__(self, scheduler, w):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.abar, self.w = scheduler.alphas_cumprod, w

    def forward(self, x, t, encoder_hidden_states=None):
        a = self.abar[t].reshape(-1, 1, 1, 1)
        return _Out((x - a.sqrt() * self.w) / (1 - a).sqrt() + self.p)


class _Zero(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, encoder_hidden_states=None):
        return _Out(torch.zeros_like(x) + self.p)


def test_evaluate_preferences_on_every_pair():
    from diffusers import DDPMScheduler

    from methods.fairgen.stages import evaluate_preferences

    sched = DDPMScheduler(num_train_timesteps=20)
    w, lo = torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4)
    pairs = {"latents_w": w.repeat(6, 1, 1, 1), "latents_l": lo.repeat(6, 1, 1, 1),
             "std_w": None, "std_l": None, "cond": torch.zeros(6, 3, 8)}
    policy, ref = _WinnerDenoiser(sched, w), _Zero()
    good = evaluate_preferences(policy, ref, pairs, sched, beta=None, seed=0, draws=3)
    assert good["n_pairs"] == 6 and good["draws"] == 3 and "dpo_loss" not in good
    # the winners' MSE is 0 (the reference's is mean(noise^2) ~ 1), the losers' the
    # reference's + abar / (1 - abar) > 0: every pair favoured
    assert good["implicit_acc"] == 1.0
    assert good["winner_mse_change"] == pytest.approx(-1.0, abs=0.25)
    assert good["loser_mse_change"] > 0
    assert good["margin"] == pytest.approx(good["loser_mse_change"] - good["winner_mse_change"])
    swapped = {**pairs, "latents_w": pairs["latents_l"], "latents_l": pairs["latents_w"]}
    bad = evaluate_preferences(policy, ref, swapped, sched, beta=10.0, seed=0, draws=3)
    assert bad["implicit_acc"] == 0.0 and bad["dpo_loss"] > math.log(2)
    same = evaluate_preferences(ref, ref, pairs, sched, beta=5000.0, seed=0, draws=3)
    assert same["implicit_acc"] == 0.0 and same["margin"] == 0.0
    assert same["dpo_loss"] == pytest.approx(math.log(2), abs=1e-7)
    # a fixed seed: the same draws
    assert evaluate_preferences(policy, ref, pairs, sched, beta=None, seed=0, draws=3) == good
