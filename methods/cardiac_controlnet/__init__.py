"""``cardiac-controlnet``: Skorupko et al.'s metadata-text + mask ControlNet on the shared
diffusion stack (see the card ``methods/cardiac_controlnet/README.md``)."""

from .conditioning import (
    CONDITION_WORDS,
    cardiac_prompt,
    clipped_inverse_count_weights,
    other_frames,
    stacked_mask,
    stacked_masks,
)
from .generator import CARDIAC_PROFILE_DEFAULTS, CardiacControlNet

__all__ = ["CARDIAC_PROFILE_DEFAULTS", "CONDITION_WORDS", "CardiacControlNet", "cardiac_prompt",
           "clipped_inverse_count_weights", "other_frames", "stacked_mask", "stacked_masks"]
