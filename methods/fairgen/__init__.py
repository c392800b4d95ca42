"""``fairgen`` and ``fairgen-as-coded``: FairGen on the shared diffusion stack (see the
card ``methods/fairgen/README.md``)."""

from .generator import FAIRGEN_PROFILE_DEFAULTS, FairGen, FairGenAsCoded

__all__ = ["FAIRGEN_PROFILE_DEFAULTS", "FairGen", "FairGenAsCoded"]
