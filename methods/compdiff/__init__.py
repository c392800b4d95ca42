"""``compdiff``: CompDiff's Hierarchical Conditioner Network on the shared diffusion stack
(see the card ``methods/compdiff/README.md``)."""

from .generator import COMPDIFF_PROFILE_DEFAULTS, CompDiff
from .hcn import HierarchicalConditioner, composition_loss, kl_standard_normal

__all__ = ["COMPDIFF_PROFILE_DEFAULTS", "CompDiff", "HierarchicalConditioner",
           "composition_loss", "kl_standard_normal"]
