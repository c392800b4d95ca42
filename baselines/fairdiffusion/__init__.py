"""``fairdiffusion``: Fair Bayesian Perturbation (Luo et al., Science Advances 2025) on the
shared diffusion stack. The mechanism is in :mod:`.perturbation` (weights, group-loss gap),
:mod:`.gp_ucb` (the Bayesian-optimisation step) and :mod:`.controller` (sigma over training)."""

from .controller import (
    DEFAULT_EXPLOITATION,
    DEFAULT_MEMORY_WINDOWS,
    DEFAULT_SIGMA_INIT,
    DEFAULT_WINDOW,
    FairBayesianPerturbation,
)
from .perturbation import (
    DEFAULT_MIN_WEIGHT,
    MISSING,
    GroupLayout,
    group_loss_gap,
    perturbation_weights,
)

__all__ = [
    "DEFAULT_EXPLOITATION",
    "DEFAULT_MEMORY_WINDOWS",
    "DEFAULT_MIN_WEIGHT",
    "DEFAULT_SIGMA_INIT",
    "DEFAULT_WINDOW",
    "MISSING",
    "FairBayesianPerturbation",
    "GroupLayout",
    "group_loss_gap",
    "perturbation_weights",
]
