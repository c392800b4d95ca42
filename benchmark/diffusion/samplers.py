"""Training-sampler weights shared by the diffusion methods.

A *class* is a prompt (subgroup x finding cell, FairGen's definition); n_c is the number of
training examples of class c, and the trainer draws example i with probability
p_i = w_i / sum_j w_j, with replacement (:meth:`TrainingHooks.sampler_weights`).

* :func:`class_balanced_weights` ``w_i = n_class(i)^-power``: power 1 is class-balanced
  re-sampling (CBRS: every class drawn equally often), power 1/2 square-root re-sampling
  (SQRS: class c drawn with probability proportional to sqrt(n_c); FairGen's sampler, as in
  its public code's ``compute_class_weights``).
* :class:`GradientAwareWeights`: FairGen's gradient-aware sampler (paper, Eq. 1-2; not in its
  public code). Class c's weight is its frequency term times its recent average gradient
  norm to an influence exponent alpha:

      w_c = n_c^(-1/2) * (G_c / mean_c' G_c')^alpha,      p_i = w_class(i) / sum_j w_class(j)

  G_c the mean gradient norm of class c's examples over the last ``window`` optimizer steps
  (classes not yet seen in the window take the mean of the seen ones; before any
  observation w_c = n_c^(-1/2), i.e. SQRS). Our design choice, documented in
  ``methods/fairgen/README.md``: the per-example gradient norm is taken with respect to the
  model's output, ||d l_i / d f_i||_2 = 2 sqrt(m_i / D) for the per-example MSE m_i over D
  elements, not with respect to all parameters (that would need one backward pass per
  example).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import torch


def class_balanced_weights(class_ids: np.ndarray, power: float) -> np.ndarray:
    """Per-example weights n_class(i)^-power (power 1: CBRS, 1/2: SQRS)."""
    counts = np.bincount(class_ids)
    return counts[class_ids].astype(np.float64) ** -power


def output_gradient_norm(per_sample_mse: torch.Tensor, numel: int) -> torch.Tensor:
    """||d m_i / d f_i||_2 = 2 sqrt(m_i / D) for m_i = mean over D elements of (f_i - y_i)^2:
    the norm of the MSE's gradient with respect to the model's output (see the module
    docstring)."""
    if numel < 1:
        raise ValueError(f"numel must be >= 1, got {numel}")
    return 2.0 * torch.sqrt(per_sample_mse.detach().float().clamp_min(0) / numel)


class GradientAwareWeights:
    """FairGen's gradient-aware class weights (module docstring; Eq. 1-2 of the paper).

    Args:
        class_counts: n_c of every class (all > 0).
        alpha: the influence exponent (0: plain SQRS).
        window: how many recent optimizer steps the average gradient norm covers.
    """

    def __init__(self, class_counts: Sequence[int], *, alpha: float = 1.0, window: int = 50):
        counts = np.asarray(class_counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size == 0 or (counts <= 0).any():
            raise ValueError(f"class_counts must be positive, got {list(class_counts)}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.counts, self.alpha, self.window = counts, float(alpha), int(window)
        # per step: (sum of norms per class, number of examples per class)
        self._steps: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.window)

    def observe(self, class_ids: Sequence[int] | np.ndarray, grad_norms: Sequence[float]
                | np.ndarray) -> None:
        """Record one optimizer step's per-example gradient norms (a new window entry)."""
        ids = np.asarray(class_ids, dtype=np.int64)
        norms = np.asarray(grad_norms, dtype=np.float64)
        if ids.shape != norms.shape:
            raise ValueError(f"class_ids {ids.shape} and grad_norms {norms.shape} differ")
        k = self.counts.size
        self._steps.append((np.bincount(ids, weights=norms, minlength=k)[:k],
                            np.bincount(ids, minlength=k)[:k].astype(np.float64)))

    def mean_norms(self) -> np.ndarray:
        """G_c over the window (NaN for a class not seen in it)."""
        if not self._steps:
            return np.full(self.counts.size, np.nan)
        s = sum(a for a, _ in self._steps)
        n = sum(b for _, b in self._steps)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / np.maximum(n, 1), np.nan)

    def class_weights(self) -> np.ndarray:
        """w_c = n_c^(-1/2) (G_c / mean G)^alpha (unnormalised)."""
        base = self.counts ** -0.5
        g = self.mean_norms()
        seen = np.isfinite(g)
        if not seen.any() or self.alpha == 0:
            return base
        g = np.where(seen, g, g[seen].mean())
        mean = g.mean()
        if mean <= 0:
            return base
        return base * (g / mean) ** self.alpha

    def example_weights(self, class_ids: np.ndarray) -> np.ndarray:
        """Per-example sampler weights w_class(i)."""
        return self.class_weights()[np.asarray(class_ids, dtype=np.int64)]

    def state_dict(self) -> dict:
        return {"steps": [(a.tolist(), b.tolist()) for a, b in self._steps]}

    def load_state_dict(self, state: dict) -> None:
        self._steps.clear()
        for a, b in state.get("steps", []):
            self._steps.append((np.asarray(a, dtype=np.float64), np.asarray(b, np.float64)))
