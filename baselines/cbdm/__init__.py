"""``cbdm``: Class-Balancing Diffusion Models (Qin et al., CVPR 2023) on the shared diffusion
stack. The regulariser itself is in :mod:`baselines.cbdm.regulariser`."""

from .regulariser import (
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
