"""The shared conditional diffusion stack: one code path from tiny CPU models to Stable
Diffusion v1-4 (diffusers UNet2DConditionModel, AutoencoderKL, transformers CLIPTextModel,
the real CLIP BPE tokenizer, DDPM training, DDIM / DPM-Solver sampling, accelerate).

Methods subclass :class:`DiffusionGenerator` and override the :class:`TrainingHooks` they
change (documented in :mod:`benchmark.diffusion.trainer`). Two optional backbone parts serve
methods that need more than a prompt: a ControlNet on the frozen UNet
(:func:`attach_controlnet`, :mod:`benchmark.diffusion.controlnet`) and a context hook that maps
the text states to the cross-attention context (:class:`ContextHook`,
:mod:`benchmark.diffusion.context`); the trainer, the sampling loop and ``save_pretrained``
handle both. Shared losses (the CBDM / CBSQ class-balancing regulariser, Diffusion-DPO,
FairGen's as-coded preference loss) are in :mod:`benchmark.diffusion.losses`, sampler weights
(CBRS, SQRS, gradient-aware) in :mod:`benchmark.diffusion.samplers`.
"""

from ..settings import BackboneSpec, DiffusionSettings
from .backbone import Backbone, PixelCodec, VaeCodec, backbone_spec, build_backbone
from .context import ContextHook, GroupTokenContext
from .controlnet import (
    ControlNetConfig,
    attach_controlnet,
    build_controlnet,
    conditioning_embedding_channels,
    controlled_unet,
)
from .data import (
    TrainData,
    build_train_data,
    control_to_tensor,
    image_to_tensor,
    tensor_to_image,
)
from .generator import DiffusionGenerator
from .losses import (
    CBDMLoss,
    OtherClassSampler,
    PreferenceLoss,
    as_coded_preference_loss,
    cbdm_loss,
    class_balancing_step,
    diffusion_dpo_loss,
    draw_other_classes,
    timestep_weight,
)
from .prompts import PROMPT_STYLES, build_prompt
from .samplers import GradientAwareWeights, class_balanced_weights, output_gradient_norm
from .sampling import SAMPLERS, sample_images
from .tokenizer import build_clip_tokenizer
from .trainer import (
    DiffusionTrainer,
    IndexSchedule,
    LossOutput,
    StepBatch,
    TrainConfig,
    TrainingHooks,
    TrainResult,
)

__all__ = [
    "PROMPT_STYLES",
    "SAMPLERS",
    "Backbone",
    "CBDMLoss",
    "GradientAwareWeights",
    "OtherClassSampler",
    "PreferenceLoss",
    "BackboneSpec",
    "ContextHook",
    "ControlNetConfig",
    "DiffusionGenerator",
    "DiffusionSettings",
    "DiffusionTrainer",
    "GroupTokenContext",
    "IndexSchedule",
    "LossOutput",
    "PixelCodec",
    "StepBatch",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "TrainingHooks",
    "VaeCodec",
    "as_coded_preference_loss",
    "attach_controlnet",
    "backbone_spec",
    "build_backbone",
    "build_clip_tokenizer",
    "build_controlnet",
    "build_prompt",
    "build_train_data",
    "cbdm_loss",
    "class_balanced_weights",
    "class_balancing_step",
    "conditioning_embedding_channels",
    "control_to_tensor",
    "controlled_unet",
    "diffusion_dpo_loss",
    "draw_other_classes",
    "image_to_tensor",
    "output_gradient_norm",
    "sample_images",
    "tensor_to_image",
    "timestep_weight",
]
