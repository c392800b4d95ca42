"""The shared conditional diffusion stack: one code path from tiny CPU models to Stable
Diffusion v1-4 (diffusers UNet2DConditionModel, AutoencoderKL, transformers CLIPTextModel,
the real CLIP BPE tokenizer, DDPM training, DDIM / DPM-Solver sampling, accelerate).

Methods subclass :class:`DiffusionGenerator` and override the :class:`TrainingHooks` they
change (documented in :mod:`benchmark.diffusion.trainer`).
"""

from ..settings import BackboneSpec, DiffusionSettings
from .backbone import Backbone, PixelCodec, VaeCodec, backbone_spec, build_backbone
from .data import TrainData, build_train_data, image_to_tensor, tensor_to_image
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
    "DiffusionGenerator",
    "DiffusionSettings",
    "DiffusionTrainer",
    "IndexSchedule",
    "LossOutput",
    "PixelCodec",
    "StepBatch",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "TrainingHooks",
    "VaeCodec",
    "backbone_spec",
    "build_backbone",
    "build_clip_tokenizer",
    "build_prompt",
    "build_train_data",
    "image_to_tensor",
    "sample_images",
    "tensor_to_image",
]
