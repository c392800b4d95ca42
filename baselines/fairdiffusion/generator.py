"""``fairdiffusion``: the shared diffusion stack trained with Fair Bayesian Perturbation.

The groups are the task grouper's labels of the sensitive attributes in the training set
(``TrainData.group_names``); a missing value, the grouper's ``UNKNOWN`` group, gets no
perturbation term and no place in the gap (the benchmark's one policy for unknown values).
Every micro-batch's DDPM loss is weighted per sample by
:meth:`FairBayesianPerturbation.weights` (xi drawn from the step's seeded generator, so each
process draws its own and a resumed run repeats them); after every optimizer step the
unweighted per-sample losses of the whole step (all micro-batches, gathered over processes)
go to :meth:`FairBayesianPerturbation.observe`, which re-optimises sigma every ``window``
steps by GP-UCB and drifts it. The controller (sigma, GP observations, generator state and
the sigma trajectory) is part of every training checkpoint, so a killed run resumes with the
same sigma path, and of the saved model (``fit_info.json``, ``method_state``).

The training log (``loss_log.csv``) gets ``fair_gap`` (the sum over attributes of the
max-min gap of group mean losses), ``fair_sigma_updated`` (1 where GP-UCB re-optimised
sigma), ``fair_ucb`` there, and one column ``sigma[attribute=group]`` per scale: the sigma
trajectory.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark import UNKNOWN, Profile
from benchmark.diffusion import (
    DiffusionGenerator,
    LossOutput,
    StepBatch,
    TrainConfig,
    TrainData,
)

from .controller import (
    DEFAULT_EXPLOITATION,
    DEFAULT_MEMORY_WINDOWS,
    DEFAULT_SIGMA_INIT,
    DEFAULT_WINDOW,
    FairBayesianPerturbation,
)
from .gp_ucb import DEFAULT_KAPPA
from .perturbation import DEFAULT_MIN_WEIGHT, MISSING, GroupLayout

#: ``window`` at the 30-step smoke profile (elsewhere the authors' 30 steps), so that sigma is
#: re-optimised during training there too
SMOKE_WINDOW = 5


class FairDiffusion(DiffusionGenerator):
    name = "fairdiffusion"
    description = ("fair Bayesian perturbation: per-group loss perturbation tuned by GP-UCB "
                   "on the group-loss gap (Luo et al., Sci. Adv. 2025)")
    default_config = {
        **DiffusionGenerator.default_config,
        "window": None,
        "exploitation": DEFAULT_EXPLOITATION,
        "kappa": DEFAULT_KAPPA,
        "sigma_init": DEFAULT_SIGMA_INIT,
        "min_weight": DEFAULT_MIN_WEIGHT,
        "memory_windows": DEFAULT_MEMORY_WINDOWS,
    }
    option_types = {**DiffusionGenerator.option_types, "window": int}

    def __init__(self, config=None):
        super().__init__(config)
        self.controller: FairBayesianPerturbation | None = None
        self._group_map: dict[str, torch.Tensor] = {}
        self._seed = 0
        # fail on a bad option now, not after the data are encoded
        self._make_controller(GroupLayout((("check", ("a", "b")),)), self.window())

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        """The diffusion defaults plus ``window``: :data:`SMOKE_WINDOW` at ``smoke``, the
        authors' 30 steps elsewhere."""
        return {**super().profile_defaults(profile),
                "window": SMOKE_WINDOW if profile.name == "smoke" else DEFAULT_WINDOW}

    def window(self) -> int:
        """W: the resolved window (before resolution: the configured one, else the
        authors' 30 steps)."""
        w = (self.resolved or self.config)["window"]
        return int(w if w is not None else DEFAULT_WINDOW)

    def _make_controller(self, layout: GroupLayout, window: int) -> FairBayesianPerturbation:
        c = self.config
        return FairBayesianPerturbation(
            layout, window=window, exploitation=float(c["exploitation"]),
            kappa=float(c["kappa"]), sigma_init=float(c["sigma_init"]),
            min_weight=float(c["min_weight"]), memory_windows=int(c["memory_windows"]),
            seed=self._seed)

    def train_config(self, seed: int) -> TrainConfig:
        self._seed = int(seed)
        return super().train_config(seed)

    # -- hooks ------------------------------------------------------------------------------
    def on_train_start(self, data: TrainData, total_steps: int) -> None:
        layout, self._group_map = layout_from_data(data)
        self.controller = self._make_controller(layout, self.window())

    def _groups(self, batch: StepBatch) -> torch.Tensor:
        assert self.controller is not None
        cols = [self._group_map[a].to(batch.group_ids[a].device)[batch.group_ids[a]]
                for a in self.controller.layout.names]
        return torch.stack(cols, dim=1)

    def sample_weights(self, batch: StepBatch, per_sample_loss: torch.Tensor) -> torch.Tensor:
        if self.controller is None:
            raise RuntimeError("fairdiffusion: sample_weights called before on_train_start")
        return self.controller.weights(self._groups(batch), generator=batch.generator)

    def on_step_end(self, step: int, outputs: list[tuple[StepBatch, LossOutput]]) -> None:
        assert self.controller is not None
        losses = torch.cat([o.per_sample.detach().float() for _, o in outputs])
        groups = torch.cat([self._groups(b) for b, _ in outputs])
        acc = self.accelerator
        if acc is not None and acc.num_processes > 1:
            losses, groups = acc.gather(losses), acc.gather(groups)
        logs = self.controller.observe(losses.cpu(), groups.cpu())
        if acc is not None and acc.num_processes > 1:
            # every process saw the same observations and draws; process 0's sigma is
            # broadcast so that floating-point differences in the GP fit cannot split them
            from accelerate.utils import broadcast

            sigma = torch.as_tensor(self.controller.sigma, dtype=torch.float64,
                                    device=acc.device)
            self.controller.sigma = broadcast(sigma, from_process=0).cpu().numpy()
        labels = self.controller.layout.labels
        logs.update({f"sigma[{lab}]": float(s) for lab, s in
                     zip(labels, self.controller.sigma, strict=True)})
        # The trainer logs each micro-batch's LossOutput.logs (averaged over micro-batches)
        # after this hook, so the step's values go into every micro-batch's logs.
        for _, out in outputs:
            out.logs.update(logs)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.controller is None else self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.controller is None:
            raise RuntimeError("fairdiffusion: load_state_dict called before on_train_start")
        self.controller.load_state_dict(state)


def layout_from_data(data: TrainData) -> tuple[GroupLayout, dict[str, torch.Tensor]]:
    """The sigma layout of a training set and, per attribute, a map from the data's group
    index to the layout's (MISSING for "unknown")."""
    attrs, maps = [], {}
    for attr, names in data.group_names.items():
        known = [n for n in names if n != UNKNOWN]
        if not known:
            continue
        attrs.append((attr, tuple(known)))
        maps[attr] = torch.tensor([MISSING if n == UNKNOWN else known.index(n) for n in names],
                                  dtype=torch.long)
    if not attrs:
        raise ValueError("fairdiffusion: no sensitive attribute has a known value in the "
                         "training set; there are no groups to perturb")
    return GroupLayout(tuple(attrs)), maps
