"""The FairDiffusion controller: keeps sigma, draws the per-sample weights each step, and
tunes sigma by GP-UCB on the group-loss gap (Luo et al., Science Advances 2025).

Every training step:

1. the trainer asks for the batch's loss weights, w_i = max(0.1, 1 + sum_a sigma[a, g_a(i)]
   xi_{i,a}) (:func:`.perturbation.perturbation_weights`), and minimises mean_i w_i l_i;
2. it reports the unweighted per-sample losses l_i; the controller records the observation
   (sigma, -gap) with gap the sum over attributes of the max-min gap of group mean losses;
3. every ``window`` steps, sigma <- argmax of the GP upper confidence bound of -gap fitted to
   the observations of the last ``memory_windows`` windows (:mod:`.gp_ucb`);
4. then sigma drifts: sigma <- rho * sigma + (1 - rho) * u, u ~ U(0, 1)^K, clipped to [0, 1],
   rho the exploitation rate.

The authors' README trains with a time window of 30 steps and an exploitation rate of 0.95
(their defaults here). Their training script is not in the public sources we could read;
the per-attribute sum of group scales, independent xi per attribute, the drift towards a
uniform draw and the sum of per-attribute gaps follow the published description and a
public re-implementation of it, and are our reading. That re-implementation fits the GP to
the last window's observations only; on a toy objective (tests/test_fairdiffusion.py) this
made the UCB jump between corners of the box, because one window's sigmas lie along one
short drift path, so we fit on the last ``memory_windows`` windows (default 5: 150
observations at W = 30, which also bounds the GP's cubic cost); ``memory_windows=1`` gives
the re-implementation's behaviour.

All randomness (drift, the GP fit and the acquisition search, and xi unless the caller
passes a generator) comes from one seeded NumPy generator whose state is part of
:meth:`FairBayesianPerturbation.state_dict`, so a run resumed from a checkpoint continues
exactly as an uninterrupted one. The sigma trajectory
(every step's sigma, gap and whether sigma was re-optimised) is kept in the state too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import gp_ucb
from .perturbation import (
    DEFAULT_MIN_WEIGHT,
    GroupLayout,
    group_loss_gap,
    perturbation_weights,
)

DEFAULT_WINDOW = 30
DEFAULT_EXPLOITATION = 0.95
DEFAULT_SIGMA_INIT = 0.5
DEFAULT_MEMORY_WINDOWS = 5
STATE_VERSION = 1


class FairBayesianPerturbation:
    """Per-sample loss weights with GP-UCB-tuned group scales (see the module docstring)."""

    def __init__(
        self,
        layout: GroupLayout,
        *,
        window: int = DEFAULT_WINDOW,
        exploitation: float = DEFAULT_EXPLOITATION,
        kappa: float = gp_ucb.DEFAULT_KAPPA,
        sigma_init: float = DEFAULT_SIGMA_INIT,
        min_weight: float = DEFAULT_MIN_WEIGHT,
        memory_windows: int = DEFAULT_MEMORY_WINDOWS,
        seed: int = 0,
    ):
        if window < 2:
            raise ValueError(f"window must be >= 2 steps, got {window}")
        if not 0.0 <= exploitation <= 1.0:
            raise ValueError(f"exploitation must lie in [0, 1], got {exploitation}")
        if not 0.0 <= sigma_init <= 1.0:
            raise ValueError(f"sigma_init must lie in [0, 1], got {sigma_init}")
        if memory_windows < 1:
            raise ValueError(f"memory_windows must be >= 1, got {memory_windows}")
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0, got {kappa}")
        self.layout = layout
        self.window = int(window)
        self.exploitation = float(exploitation)
        self.kappa = float(kappa)
        self.min_weight = float(min_weight)
        self.memory_windows = int(memory_windows)
        self.seed = int(seed)
        self.rng = np.random.default_rng(seed)
        self.sigma = np.full(layout.size, float(sigma_init))
        self.step = 0
        self._obs_x: list[list[float]] = []
        self._obs_y: list[float] = []
        self._obs_window: list[int] = []
        self._pending: np.ndarray | None = None  # sigma used for the current step's weights
        self.trajectory: list[dict[str, Any]] = []

    # ---------------------------------------------------------------------------------------
    # one training step

    def weights(self, groups: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        """This step's loss weights for a batch, (B,) float32 on ``groups``' device.

        xi is drawn from ``generator`` when given (the trainer's per-step, per-process
        generator: independent draws on every process), else from the controller's own."""
        self.layout.check_groups(groups)
        if generator is not None:
            xi = torch.randn(tuple(groups.shape), generator=generator)
        else:
            xi = torch.from_numpy(self.rng.standard_normal(tuple(groups.shape)))
        xi = xi.to(device=groups.device, dtype=torch.float32)
        self._pending = self.sigma.copy()
        sigma = torch.from_numpy(self.sigma).to(torch.float32)
        return perturbation_weights(sigma, groups, xi, self.layout, min_weight=self.min_weight)

    def observe(self, per_sample_loss: torch.Tensor, groups: torch.Tensor) -> dict[str, float]:
        """Record the step's unweighted per-sample losses, re-optimise sigma at the end of a
        window, drift it, and return the values to log."""
        used = self._pending if self._pending is not None else self.sigma.copy()
        self._pending = None
        gap = group_loss_gap(per_sample_loss, groups, self.layout)
        window_index = self.step // self.window
        self._obs_x.append(used.tolist())
        self._obs_y.append(-gap)
        self._obs_window.append(window_index)
        self.step += 1
        updated = self.step % self.window == 0
        acq = float("nan")
        record: dict[str, Any] = {"step": self.step, "gap": gap, "updated": updated}
        if updated:
            acq = self._update()
            record["proposal"] = self.sigma.tolist()
        self._drift()
        record["sigma"] = self.sigma.tolist()
        self.trajectory.append(record)
        out = {"fair_gap": gap, "fair_sigma_mean": float(self.sigma.mean()),
               "fair_sigma_updated": float(updated)}
        if updated:
            out["fair_ucb"] = acq
        return out

    def _update(self) -> float:
        keep_from = self.step // self.window - self.memory_windows
        idx = [j for j, w in enumerate(self._obs_window) if w >= keep_from]
        x = np.asarray([self._obs_x[j] for j in idx])
        y = np.asarray([self._obs_y[j] for j in idx])
        self.sigma, value = gp_ucb.propose(x, y, self.rng, bounds=(0.0, 1.0), kappa=self.kappa)
        # observations older than the memory are never used again
        self._obs_x = [self._obs_x[j] for j in idx]
        self._obs_y = [self._obs_y[j] for j in idx]
        self._obs_window = [self._obs_window[j] for j in idx]
        return value

    def _drift(self) -> None:
        u = self.rng.uniform(0.0, 1.0, self.sigma.shape)
        rho = self.exploitation
        self.sigma = np.clip(rho * self.sigma + (1.0 - rho) * u, 0.0, 1.0)

    # ---------------------------------------------------------------------------------------
    # checkpointing

    def _config(self) -> dict[str, Any]:
        return {"window": self.window, "exploitation": self.exploitation, "kappa": self.kappa,
                "min_weight": self.min_weight, "memory_windows": self.memory_windows,
                "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (JSON-serialisable)."""
        return {
            "version": STATE_VERSION,
            "layout": [[a, list(g)] for a, g in self.layout.attributes],
            "config": self._config(),
            "step": self.step,
            "sigma": self.sigma.tolist(),
            "rng": self.rng.bit_generator.state,
            "observations": {"x": self._obs_x, "y": self._obs_y, "window": self._obs_window},
            "trajectory": self.trajectory,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"FairDiffusion state version {state.get('version')!r}, "
                             f"expected {STATE_VERSION}")
        layout = [[a, list(g)] for a, g in self.layout.attributes]
        if state["layout"] != layout:
            raise ValueError(f"checkpoint groups {state['layout']} differ from this run's "
                             f"{layout}")
        if state["config"] != self._config():
            raise ValueError(f"checkpoint FairDiffusion settings {state['config']} differ from "
                             f"this run's {self._config()}")
        self.step = int(state["step"])
        self.sigma = np.asarray(state["sigma"], dtype=np.float64)
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        obs = state["observations"]
        self._obs_x, self._obs_y = list(obs["x"]), list(obs["y"])
        self._obs_window = list(obs["window"])
        self.trajectory = list(state["trajectory"])
        self._pending = None
