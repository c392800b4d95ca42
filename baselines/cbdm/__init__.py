"""``cbdm``: Class-Balancing Diffusion Models (Qin et al., CVPR 2023) on the shared diffusion
stack. The regulariser itself is in :mod:`benchmark.diffusion.losses` (FairGen's CBSQ is the
same objective, and a method never imports a baseline); it is re-exported here."""

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
