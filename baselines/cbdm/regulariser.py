"""The class-balancing regulariser of CBDM (Qin et al., "Class-Balancing Diffusion Models",
CVPR 2023, arXiv:2305.00562).

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
the plugin (:mod:`baselines.cbdm`) makes it, this module only does the arithmetic.
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
    ddpm = ((pred32 - target.float()) ** 2).mean()
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
