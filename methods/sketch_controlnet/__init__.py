"""``sketch-controlnet``: Kim & Hong (2025) on the shared diffusion stack (see the card
``methods/sketch_controlnet/README.md``)."""

from .generator import SKETCH_PROFILE_DEFAULTS, SketchControlNet

__all__ = ["SKETCH_PROFILE_DEFAULTS", "SketchControlNet"]
