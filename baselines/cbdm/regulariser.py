"""The class-balancing regulariser of CBDM (Qin et al., CVPR 2023).

It lives in :mod:`benchmark.diffusion.losses` (FairGen's CBSQ is the same objective, and a
method never imports a baseline); this module re-exports it under its old names.
"""

from benchmark.diffusion.losses import (
    DEFAULT_CONDITION_DROPOUT,
    DEFAULT_GAMMA,
    DEFAULT_TAU,
    CBDMLoss,
    OtherClassSampler,
    cbdm_loss,
    timestep_weight,
)

__all__ = [
    "DEFAULT_CONDITION_DROPOUT",
    "DEFAULT_GAMMA",
    "DEFAULT_TAU",
    "CBDMLoss",
    "OtherClassSampler",
    "cbdm_loss",
    "timestep_weight",
]
