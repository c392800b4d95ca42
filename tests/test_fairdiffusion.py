"""FairDiffusion's fair Bayesian perturbation: weights, group-loss gap, GP-UCB and the sigma
controller (Luo et al., Science Advances 2025), against hand-worked numbers and toy
objectives with known maximisers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from baselines.fairdiffusion import (
    MISSING,
    FairBayesianPerturbation,
    GroupLayout,
    gp_ucb,
    group_loss_gap,
    perturbation_weights,
)

LAYOUT = GroupLayout.from_mapping({"sex": ["female", "male"], "age_group": ["young", "old"]})


def test_layout_encodes_rows_and_rejects_unknown_values():
    rows = [{"sex": "male", "age_group": "young"}, {"sex": "female", "age_group": None}]
    assert LAYOUT.encode(rows).tolist() == [[1, 0], [0, MISSING]]
    assert LAYOUT.size == 4 and LAYOUT.offsets == (0, 2)
    assert LAYOUT.labels == ("sex=female", "sex=male", "age_group=young", "age_group=old")
    with pytest.raises(ValueError, match="sex='other' is not one of"):
        LAYOUT.encode([{"sex": "other", "age_group": "old"}])
    with pytest.raises(KeyError, match="age_group"):
        LAYOUT.encode([{"sex": "male"}])


def test_weights_match_hand_computation():
    # sigma = [s(f), s(m), s(young), s(old)] = [0.1, 0.2, 0.3, 0.4]
    # w0 = 1 + s(f) * 1 + s(old) * -1     = 1 + 0.1 - 0.4  = 0.7
    # w1 = 1 + s(m) * 2 + s(young) * 0.5  = 1 + 0.4 + 0.15 = 1.55
    # w2 = 1 + s(m) * -1 (age missing)    = 0.8
    sigma = torch.tensor([0.1, 0.2, 0.3, 0.4])
    groups = torch.tensor([[0, 1], [1, 0], [1, MISSING]])
    xi = torch.tensor([[1.0, -1.0], [2.0, 0.5], [-1.0, 3.0]])
    w = perturbation_weights(sigma, groups, xi, LAYOUT)
    assert w.tolist() == pytest.approx([0.7, 1.55, 0.8])


def test_weights_are_clamped_at_the_minimum():
    # 1 + 1.0 * -2 + 0.5 * -1 = -1.5 -> 0.1 ; 1 + 0.9 * -1 = 0.1 exactly ; 1 - 0.3 = 0.7 kept
    sigma = torch.tensor([1.0, 0.9, 0.5, 0.3])
    groups = torch.tensor([[0, 0], [1, MISSING], [MISSING, 1]])
    xi = torch.tensor([[-2.0, -1.0], [-1.0, 5.0], [9.0, -1.0]])
    w = perturbation_weights(sigma, groups, xi, LAYOUT)
    assert w.tolist() == pytest.approx([0.1, 0.1, 0.7])
    w_half = perturbation_weights(sigma, groups, xi, LAYOUT, min_weight=0.5)
    assert w_half.tolist() == pytest.approx([0.5, 0.5, 0.7])


def test_weights_reject_bad_shapes():
    with pytest.raises(ValueError, match="sigma must have shape"):
        perturbation_weights(torch.zeros(3), torch.zeros(1, 2, dtype=torch.long),
                             torch.zeros(1, 2), LAYOUT)
    with pytest.raises(ValueError, match="outside"):
        perturbation_weights(torch.zeros(4), torch.tensor([[2, 0]]), torch.zeros(1, 2), LAYOUT)


def test_group_loss_gap_matches_hand_computation():
    # sex: female mean (1 + 3) / 2 = 2, male (2 + 10) / 2 = 6 -> 4
    # age: young (1 + 2) / 2 = 1.5, old 3 (the last sample's age is missing) -> 1.5
    groups = torch.tensor([[0, 0], [0, 1], [1, 0], [1, MISSING]])
    loss = torch.tensor([1.0, 3.0, 2.0, 10.0])
    assert group_loss_gap(loss, groups, LAYOUT) == pytest.approx(5.5)
    # only one age group present: age adds nothing
    assert group_loss_gap(loss[:1].repeat(2), groups[[0, 0]], LAYOUT) == 0.0


def test_controller_weights_are_deterministic_per_seed():
    groups = torch.tensor([[0, 0], [1, 1], [0, 1]])
    runs = []
    for seed in (7, 7, 8):
        c = FairBayesianPerturbation(LAYOUT, window=50, seed=seed)
        ws = []
        for _ in range(5):
            ws.append(c.weights(groups))
            c.observe(torch.ones(3), groups)
        runs.append(torch.stack(ws))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_controller_drift_between_updates():
    # no update inside a window: sigma <- rho * sigma + (1 - rho) * u, u ~ U(0,1) from the
    # controller's generator after this step's xi draws
    c = FairBayesianPerturbation(LAYOUT, window=50, exploitation=0.9, sigma_init=0.5, seed=3)
    groups = torch.tensor([[0, 0], [1, 1]])
    c.weights(groups)
    c.observe(torch.ones(2), groups)
    rng = np.random.default_rng(3)
    rng.standard_normal((2, 2))
    u = rng.uniform(0.0, 1.0, 4)
    assert c.sigma.tolist() == pytest.approx((0.9 * 0.5 + 0.1 * u).tolist())
    assert c.trajectory[-1]["updated"] is False


def _bo_loop(f, dim, n_init, n_iter, seed):
    rng = np.random.default_rng(seed)
    x = list(rng.uniform(0.0, 1.0, (n_init, dim)))
    y = [f(p) for p in x]
    for _ in range(n_iter):
        p, _ = gp_ucb.propose(np.array(x), np.array(y), rng)
        assert ((p >= 0.0) & (p <= 1.0)).all()
        x.append(p)
        y.append(f(p))
    return np.array(x[int(np.argmax(y))])


@pytest.mark.slow
def test_gp_ucb_finds_the_maximiser_in_1d():
    best = _bo_loop(lambda s: -(s[0] - 0.3) ** 2, dim=1, n_init=3, n_iter=6, seed=0)
    assert best[0] == pytest.approx(0.3, abs=0.03)


@pytest.mark.slow
def test_gp_ucb_finds_the_maximiser_in_2d():
    f = lambda s: -((s[0] - 0.2) ** 2 + (s[1] - 0.7) ** 2)  # noqa: E731
    best = _bo_loop(f, dim=2, n_init=4, n_iter=12, seed=1)
    assert best.tolist() == pytest.approx([0.2, 0.7], abs=0.05)


def test_gp_ucb_rejects_bad_observations():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="NaN"):
        gp_ucb.propose(np.array([[0.1], [0.2]]), np.array([1.0, np.nan]), rng)
    with pytest.raises(ValueError, match="need observations"):
        gp_ucb.propose(np.zeros((0, 1)), np.zeros(0), rng)


def _toy_run(controller, steps, target=(0.2, 0.8)):
    """Group losses whose gap is |sigma - target|^2: females 1 + gap, males 1."""
    groups = torch.tensor([[0]] * 4 + [[1]] * 4)
    weights = []
    for _ in range(steps):
        weights.append(controller.weights(groups))
        s = controller._pending
        gap = (s[0] - target[0]) ** 2 + (s[1] - target[1]) ** 2
        controller.observe(torch.tensor([1.0 + gap] * 4 + [1.0] * 4), groups)
    return torch.stack(weights)


@pytest.mark.slow
def test_controller_sigma_update_finds_the_fair_sigma():
    layout = GroupLayout.from_mapping({"sex": ["female", "male"]})
    c = FairBayesianPerturbation(layout, window=10, seed=0)
    _toy_run(c, 60)
    proposals = [r["proposal"] for r in c.trajectory if r["updated"]]
    assert len(proposals) == 6
    assert proposals[-1] == pytest.approx([0.2, 0.8], abs=0.05)
    # sigma between updates stays in the box
    assert all(0.0 <= s <= 1.0 for r in c.trajectory for s in r["sigma"])


@pytest.mark.slow
def test_controller_resumes_exactly_from_its_state():
    layout = GroupLayout.from_mapping({"sex": ["female", "male"]})
    straight = FairBayesianPerturbation(layout, window=10, seed=5)
    w_straight = _toy_run(straight, 35)

    first = FairBayesianPerturbation(layout, window=10, seed=5)
    w_first = _toy_run(first, 22)
    state = json.loads(json.dumps(first.state_dict()))  # the checkpoint is plain JSON
    resumed = FairBayesianPerturbation(layout, window=10, seed=5)
    resumed.load_state_dict(state)
    w_rest = _toy_run(resumed, 13)

    assert torch.equal(torch.cat([w_first, w_rest]), w_straight)
    assert resumed.sigma.tolist() == straight.sigma.tolist()
    assert resumed.trajectory == straight.trajectory

    other = FairBayesianPerturbation(layout, window=12, seed=5)
    with pytest.raises(ValueError, match="settings"):
        other.load_state_dict(state)


def test_controller_rejects_bad_settings():
    with pytest.raises(ValueError, match="exploitation"):
        FairBayesianPerturbation(LAYOUT, exploitation=1.5)
    with pytest.raises(ValueError, match="window"):
        FairBayesianPerturbation(LAYOUT, window=1)


def test_controller_draws_xi_from_a_given_generator():
    # xi from the caller's generator: w = max(0.1, 1 + sigma * xi) with sigma = 0.5
    layout = GroupLayout.from_mapping({"sex": ["female", "male"]})
    c = FairBayesianPerturbation(layout, window=50, sigma_init=0.5, seed=0)
    groups = torch.tensor([[0], [1], [MISSING]])
    w = c.weights(groups, generator=torch.Generator().manual_seed(11))
    xi = torch.randn((3, 1), generator=torch.Generator().manual_seed(11))[:, 0]
    expect = torch.clamp(1 + 0.5 * xi, min=0.1)
    expect[2] = 1.0  # missing attribute: no term
    assert torch.allclose(w, expect)
    # the controller's own generator was not used
    assert c.rng.bit_generator.state == np.random.default_rng(0).bit_generator.state


def test_gp_ucb_refinement_gradient_matches_scipy_finite_differences():
    # the batched forward differences agree with scipy's own 2-point gradient of -UCB up to
    # the round-off of a 1e-8 step (batched and single GP predictions differ in the last
    # bits), and at the upper bound the step goes backwards
    from scipy.optimize import approx_fprime

    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 1.0, (20, 3))
    y = np.sin(3 * x).sum(1)
    gp = gp_ucb.fit_gp(x, y, rng)

    def ucb(u):
        mu, sd = gp.predict(np.atleast_2d(u), return_std=True)
        return mu + 2.0 * sd

    f = gp_ucb.neg_ucb_and_grad(ucb)
    u = np.array([0.2, 0.5, 0.9])
    value, grad = f(u)
    assert value == pytest.approx(-float(ucb(u)[0]))
    ref = approx_fprime(u, lambda v: -float(ucb(v)[0]), gp_ucb.FD_STEP)
    assert grad == pytest.approx(ref, rel=1e-3, abs=1e-6)
    # a central difference with a larger step agrees to first order (the gradient is real)
    h = 1e-4
    central = [(-float(ucb(u + h * e)[0]) + float(ucb(u - h * e)[0])) / (2 * h) for e in np.eye(3)]
    assert grad == pytest.approx(central, rel=1e-2, abs=1e-4)
    at_bound = np.array([1.0, 0.5, 0.5])
    _, g_b = f(at_bound)
    back = (-float(ucb(at_bound - np.array([gp_ucb.FD_STEP, 0, 0]))[0])
            + float(ucb(at_bound)[0])) / -gp_ucb.FD_STEP
    assert g_b[0] == pytest.approx(back, rel=1e-3)
