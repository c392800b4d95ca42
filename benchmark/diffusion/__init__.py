"""The shared conditional diffusion stack: one code path from tiny CPU models to Stable
Diffusion v1-4 (diffusers UNet2DConditionModel, AutoencoderKL, transformers CLIPTextModel,
the real CLIP BPE tokenizer, DDPM training, DDIM / DPM-Solver sampling, accelerate).

Methods subclass :class:`DiffusionGenerator` and override the :class:`TrainingHooks` they
change (documented in :mod:`benchmark.diffusion.trainer`). Two optional backbone parts serve
methods that need more than a prompt: a ControlNet on the frozen UNet
(:func:`attach_controlnet`, :mod:`benchmark.diffusion.controlnet`) and a context hook that maps
the text states to the cross-attention context (:class:`ContextHook`,
:mod:`benchmark.diffusion.context`); the trainer, the sampling loop and ``save_pretrained``
handle both.
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
from .prompts import PROMPT_STYLES, build_prompt
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
    "attach_controlnet",
    "backbone_spec",
    "build_backbone",
    "build_clip_tokenizer",
    "build_controlnet",
    "build_prompt",
    "build_train_data",
    "conditioning_embedding_channels",
    "control_to_tensor",
    "controlled_unet",
    "image_to_tensor",
    "sample_images",
    "tensor_to_image",
]
