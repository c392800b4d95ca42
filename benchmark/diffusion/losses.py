"""Training losses shared by the diffusion methods.

**The class-balancing regulariser** of CBDM (Qin et al., "Class-Balancing Diffusion Models",
CVPR 2023, arXiv:2305.00562); FairGen's class-diversity loss CBSQ (its Eq. 4) is the same
objective (used by ``baselines/cbdm`` and ``methods/fairgen``).

CBDM trains a conditional diffusion model with the usual noise-prediction loss plus a
distribution-adjustment regulariser. For a noisy sample x_t of class y it also predicts the
noise as if x_t belonged to another class y', and pulls the two predictions together, more
strongly at noisier timesteps:

    L = L_ddpm + mean[ w_t * (eps(x_t, y)  - sg(eps(x_t, y')))^2 ]            (regulariser)
               + gamma * mean[ w_t * (sg(eps(x_t, y)) - eps(x_t, y'))^2 ]     (commitment)

    L_ddpm = mean[ (eps(x_t, y) - target)^2 ],   w_t = (t / T) * tau,

sg = stop-gradient, t in {0, ..., T-1} the training timestep, T the number of training
timesteps, tau = 1 and gamma = 1/4 by default. The means run over every element of the batch
(batch x channels x height x width). y' is drawn from the training class frequencies when
training from scratch and uniformly over the classes when fine-tuning a pretrained model.

Checked against the authors' code (github.com/qym7/CBDM-pytorch, ``diffusion.py`` and
``main.py``):

- the weight is ``t / T * tau`` with the 0-based timestep, the regulariser holds the
  other-class prediction fixed and the commitment term (factor 1/4) holds the own-class
  prediction fixed, and both are averaged over all elements and added to the averaged DDPM
  loss: as stated above;
- y' is drawn from the normalised class counts of the training set (all classes, so y' can
  equal y), uniformly when ``--finetune``: as stated above;
- one difference: for classifier-free guidance the authors drop the condition of the whole
  batch with probability 1/10 and then skip the regulariser for that batch. We drop the
  condition per sample (what diffusers-style trainers do) and give the dropped samples a zero
  regulariser while still counting them in the batch mean, so the expected regulariser per
  step is the same (0.9 x the conditioned value) and no step is entirely unregularised.

The regulariser needs the model's prediction for another class, i.e. a second forward pass;
the plugins (:mod:`baselines.cbdm`, :mod:`methods.fairgen`) make it, this module only does
the arithmetic.

**Preference losses** on pairs (x_w preferred to x_l, one prompt c), each with per-sample
MSEs m = mean over (C, h, w) of (f(x_t, t, c) - target)^2:

* :func:`diffusion_dpo_loss`: Diffusion-DPO (Wallace et al., "Diffusion Model Alignment
  Using Direct Preference Optimization", CVPR 2024, arXiv:2311.12908, Eq. 14 with the
  per-timestep weight folded into beta), winner and loser noised with the *same* t and
  noise, a frozen reference model f_ref:

      L_DPO = -log sigmoid( -beta/2 * [ (m_w - m_w^ref) - (m_l - m_l^ref) ] )

  = log 2 when the policy equals the reference; lowering it lowers m_w and raises m_l
  relative to the reference. beta = 5000 for SD 1.5 in the paper; the reference code
  (SalesforceAIResearch/DiffusionDPO, ``train.py``) computes the same with
  ``scale_term = -0.5 * beta_dpo``.
* :func:`as_coded_preference_loss`: FairGen's public code (Krisocer/FairGen,
  ``train_text_to_image_FairGen.py``): winner and loser share t but get independent
  noise, no reference model:

      L_pref = -log sigmoid( beta * (m_l - m_w) ) + mean(m_w),   beta = 0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_TAU = 1.0
DEFAULT_GAMMA = 0.25
DEFAULT_CONDITION_DROPOUT = 0.1


@dataclass(frozen=True)
class CBDMLoss:
    """The CBDM objective and its parts (each a scalar tensor)."""

    total: torch.Tensor
    ddpm: torch.Tensor
    regulariser: torch.Tensor
    commitment: torch.Tensor
    gamma: float

    def as_floats(self) -> dict[str, float]:
        """Detached values for a training log."""
        return {
            "loss": float(self.total.detach()),
            "loss_ddpm": float(self.ddpm.detach()),
            "cbdm_reg": float(self.regulariser.detach()),
            "cbdm_commit": float(self.commitment.detach()),
        }


def timestep_weight(
    timesteps: torch.Tensor, num_train_timesteps: int, tau: float = DEFAULT_TAU
) -> torch.Tensor:
    """w_t = (t / T) * tau for 0-based training timesteps t (shape (B,)), as float."""
    if num_train_timesteps <= 0:
        raise ValueError(f"num_train_timesteps must be positive, got {num_train_timesteps}")
    t = timesteps.to(torch.float32)
    if bool((t < 0).any()) or bool((t >= num_train_timesteps).any()):
        raise ValueError(
            f"timesteps must lie in [0, {num_train_timesteps - 1}], got "
            f"[{int(t.min())}, {int(t.max())}]"
        )
    return t / float(num_train_timesteps) * float(tau)


def _per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1)


def cbdm_loss(
    pred: torch.Tensor,
    pred_other: torch.Tensor,
    target: torch.Tensor,
    timesteps: torch.Tensor,
    *,
    num_train_timesteps: int,
    tau: float = DEFAULT_TAU,
    gamma: float = DEFAULT_GAMMA,
    conditioned: torch.Tensor | None = None,
    other_rows: torch.Tensor | None = None,
    timestep_loss_weights: torch.Tensor | None = None,
) -> CBDMLoss:
    """The CBDM objective for one batch.

    Args:
        pred: the model's prediction for x_t under the sample's own condition y (B, ...).
        pred_other: the prediction for the same x_t and t under the other class y' (B, ...).
        target: the regression target of ``pred`` (the noise for epsilon prediction).
        timesteps: the 0-based training timesteps t (B,).
        num_train_timesteps: T.
        tau: scale of the timestep weight.
        gamma: weight of the commitment term.
        conditioned: optional bool mask (B,); False marks samples whose condition was dropped
            for classifier-free guidance. Their regulariser and commitment are 0, but they
            still count in the batch mean (see the module docstring).
        other_rows: optional indices (k,) of the batch rows that got an other-class
            prediction; ``pred_other`` then has k rows, row j belonging to ``pred[other_rows[j]]``.
            The regulariser and commitment are averaged over those k rows only: for a
            uniformly random subset this is an unbiased estimate of the full-batch mean (the
            DDPM loss still averages over the whole batch). None: every row (the paper's form).
        timestep_loss_weights: optional per-sample weights m (B,) of the training stack's
            timestep weighting (``StepBatch.loss_weights``, e.g. clamp(SNR, 1, 20) in x0
            space at the cpu profile). They multiply all three terms of each sample:
            mean_i m_i ||f_i - target_i||^2 + mean_i m_i w_i ||f_i - sg f'_i||^2 + ...
            The paper's terms live in eps space; any other target (v, x0) is eps times a
            factor of t alone, which scales the three terms of a sample alike, so at every t
            the ratio of the regulariser to the DDPM term stays the paper's tau t / T, and m
            only sets how much each timestep counts overall (as it does for every method's
            DDPM term). None: all ones.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have one shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    k = pred.shape[0] if other_rows is None else int(other_rows.shape[0])
    if other_rows is not None and (other_rows.ndim != 1 or k == 0):
        raise ValueError(f"other_rows must be a non-empty 1-D index tensor, got shape "
                         f"{tuple(other_rows.shape)}")
    if pred_other.shape != (k, *pred.shape[1:]):
        raise ValueError(
            f"pred_other must have shape {(k, *pred.shape[1:])} (one row per regularised "
            f"sample), got {tuple(pred_other.shape)}"
        )
    if timesteps.shape != (pred.shape[0],):
        raise ValueError(f"timesteps must have shape ({pred.shape[0]},), got "
                         f"{tuple(timesteps.shape)}")
    w = timestep_weight(timesteps, num_train_timesteps, tau).to(pred.device)
    if conditioned is not None:
        if conditioned.shape != (pred.shape[0],):
            raise ValueError(f"conditioned must have shape ({pred.shape[0]},), got "
                             f"{tuple(conditioned.shape)}")
        w = w * conditioned.to(device=pred.device, dtype=w.dtype)
    pred32, other32 = pred.float(), pred_other.float()
    m = None
    if timestep_loss_weights is not None:
        if timestep_loss_weights.shape != (pred.shape[0],):
            raise ValueError(f"timestep_loss_weights must have shape ({pred.shape[0]},), got "
                             f"{tuple(timestep_loss_weights.shape)}")
        m = timestep_loss_weights.to(device=pred.device, dtype=torch.float32)
        w = w * m
    per_ddpm = _per_sample_mean((pred32 - target.float()) ** 2)
    ddpm = (per_ddpm if m is None else m * per_ddpm).mean()
    if other_rows is not None:
        rows = other_rows.to(pred.device)
        pred32, w = pred32[rows], w[rows]
    reg = (w * _per_sample_mean((pred32 - other32.detach()) ** 2)).mean()
    commit = (w * _per_sample_mean((pred32.detach() - other32) ** 2)).mean()
    return CBDMLoss(ddpm + reg + gamma * commit, ddpm, reg, commit, float(gamma))


class OtherClassSampler:
    """Draws the other class y' of the CBDM regulariser.

    From the training class frequencies n_c / sum n (training from scratch) or uniformly over
    the classes (``uniform=True``, the authors' choice when fine-tuning a pretrained model).
    Classes are indices 0..C-1 into the caller's list of classes (here: prompts, one per
    subgroup x finding cell).
    """

    def __init__(self, class_counts: Sequence[int], *, uniform: bool = False):
        counts = np.asarray(class_counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size == 0:
            raise ValueError("class_counts must be a non-empty 1-D sequence")
        if (counts < 0).any() or not np.isfinite(counts).all():
            raise ValueError(f"class_counts must be finite and >= 0, got {counts.tolist()}")
        if counts.sum() == 0:
            raise ValueError("class_counts sum to 0: no class to draw from")
        self.uniform = bool(uniform)
        probs = np.full(counts.size, 1.0 / counts.size) if uniform else counts / counts.sum()
        self.probabilities = probs

    @property
    def num_classes(self) -> int:
        return int(self.probabilities.size)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` class indices (int64 tensor on the CPU), drawn with replacement."""
        probs = torch.as_tensor(self.probabilities, dtype=torch.float64)
        return torch.multinomial(probs, n, replacement=True, generator=generator)


def draw_other_classes(class_ids: torch.Tensor, sampler: OtherClassSampler, *,
                       distinct: bool = False, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
    """y' for every row of ``class_ids`` from ``sampler``; with ``distinct`` a draw equal to
    the row's own class y is redrawn from the sampler's distribution restricted to the other
    classes (FairGen's paper: "a distinct class"; its code and CBDM's allow y' = y).
    Returns int64 indices on the CPU."""
    own = class_ids.detach().cpu().long()
    other = sampler.sample(own.shape[0], generator)
    if not distinct:
        return other
    if sampler.num_classes < 2:
        raise ValueError("a distinct other class needs at least 2 classes")
    probs = torch.as_tensor(sampler.probabilities, dtype=torch.float64)
    for i in torch.nonzero(other == own).flatten().tolist():
        p = probs.clone()
        p[own[i]] = 0.0
        if float(p.sum()) <= 0:
            raise ValueError(f"class {int(own[i])} has no other class of positive probability")
        other[i] = torch.multinomial(p, 1, generator=generator)[0]
    return other


@dataclass(frozen=True)
class PreferenceLoss:
    """A preference objective and its parts (scalar tensors; ``implicit_acc`` the share of
    pairs whose winner is already favoured)."""

    total: torch.Tensor
    preference: torch.Tensor
    winner_mse: torch.Tensor
    implicit_acc: torch.Tensor

    def as_floats(self, prefix: str = "pref") -> dict[str, float]:
        return {f"{prefix}_loss": float(self.preference.detach()),
                f"{prefix}_winner_mse": float(self.winner_mse.detach()),
                f"{prefix}_implicit_acc": float(self.implicit_acc.detach())}


def _check_pairs(*tensors: torch.Tensor) -> None:
    shape = tensors[0].shape
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(f"preference losses take per-pair MSEs of shape (P,), got "
                         f"{tuple(shape)}")
    for t in tensors[1:]:
        if t.shape != shape:
            raise ValueError(f"per-pair MSEs must share one shape, got {tuple(shape)} and "
                             f"{tuple(t.shape)}")


def diffusion_dpo_loss(mse_w: torch.Tensor, mse_l: torch.Tensor, ref_mse_w: torch.Tensor,
                       ref_mse_l: torch.Tensor, *, beta: float) -> PreferenceLoss:
    """Diffusion-DPO (Wallace et al., CVPR 2024, Eq. 14; see the module docstring):

        L = mean_pairs -log sigmoid( -beta/2 * [ (m_w - m_w^ref) - (m_l - m_l^ref) ] )

    Args:
        mse_w, mse_l: the policy's per-pair MSEs (P,) of the winner and loser, noised with
            the same t and noise.
        ref_mse_w, ref_mse_l: the frozen reference model's MSEs on the same inputs (their
            gradient is not used).
        beta: the KL strength (5000 for SD 1.5 in the paper).
    """
    _check_pairs(mse_w, mse_l, ref_mse_w, ref_mse_l)
    inside = -0.5 * float(beta) * ((mse_w - ref_mse_w.detach()) - (mse_l - ref_mse_l.detach()))
    loss = -torch.nn.functional.logsigmoid(inside).mean()
    return PreferenceLoss(loss, loss, mse_w.mean(), (inside > 0).float().mean())


def as_coded_preference_loss(mse_w: torch.Tensor, mse_l: torch.Tensor, *, beta: float
                             ) -> PreferenceLoss:
    """FairGen's preference loss as in its public code (module docstring):

        L = mean_pairs -log sigmoid( beta * (m_l - m_w) ) + mean_pairs m_w

    (winner and loser share t but not the noise; no reference model; beta = 0.5)."""
    _check_pairs(mse_w, mse_l)
    inside = float(beta) * (mse_l - mse_w)
    pref = -torch.nn.functional.logsigmoid(inside).mean()
    return PreferenceLoss(pref + mse_w.mean(), pref, mse_w.mean(), (inside > 0).float().mean())


def class_balancing_step(batch, other: torch.Tensor, *, fraction: float = 1.0,
                         tau: float = DEFAULT_TAU, gamma: float = DEFAULT_GAMMA
                         ) -> tuple[CBDMLoss, torch.Tensor]:
    """:func:`cbdm_loss` of one trainer micro-batch (a
    :class:`benchmark.diffusion.StepBatch`) with other classes ``other`` (B,): one UNet call
    on [own conditions; other classes' conditions]. With ``fraction`` < 1 only a uniformly
    random share of the rows (at least one, drawn from the batch's generator) gets the
    other-class prediction (``other_rows`` of :func:`cbdm_loss`). Samples whose prompt was
    dropped get no regulariser. The batch's timestep loss weights (``loss_weights``) weigh
    every term as the stack's DDPM loss does. Returns the loss and the own-condition
    prediction."""
    n = batch.timesteps.shape[0]
    other = other.to(batch.class_ids.device)
    rows = None
    if fraction < 1.0:
        k = max(1, round(fraction * n))
        rows = torch.randperm(n, generator=batch.generator)[:k].to(batch.timesteps.device)
        other = other[rows]
    sub = slice(None) if rows is None else rows
    both = batch.predict(torch.cat([batch.noisy_latents, batch.noisy_latents[sub]]),
                         torch.cat([batch.timesteps, batch.timesteps[sub]]),
                         torch.cat([batch.cond, batch.embed(other)]))
    pred, pred_other = both[:n], both[n:]
    out = cbdm_loss(pred, pred_other, batch.target, batch.timesteps,
                    num_train_timesteps=batch.num_train_timesteps, tau=tau, gamma=gamma,
                    conditioned=~batch.dropped, other_rows=rows,
                    timestep_loss_weights=batch.loss_weights)
    return out, pred
