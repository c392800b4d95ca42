"""The settings blocks of a run profile: plain frozen dataclasses, nothing heavy imported.

A :class:`benchmark.profiles.Profile` holds one of each (its values are in
``benchmark/profiles.py``, the one place where per-profile settings live):

- :class:`DiffusionSettings`: the defaults of the shared diffusion stack's options (training
  and sampling) and the :class:`BackboneSpec` (model sizes) of the profile;
- :class:`OracleConfig`: how the phantom oracle of the profile is trained;
- :class:`benchmark.downstream.DownstreamConfig`: the downstream classifiers.

The classes are defined here (not beside the code that uses them) so that
``import benchmark.profiles`` stays light: the diffusion and oracle packages import torch,
diffusers and timm; their public surfaces re-export these classes.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SD_V1_4 = "CompVis/stable-diffusion-v1-4"


# --------------------------------------------------------------------------------------------
# Diffusion backbone sizes


@dataclass(frozen=True)
class BackboneSpec:
    """Sizes of one profile's diffusion backbone (all plain data; saved in ``backbone.json``).

    Attributes:
        profile: the profile name.
        resolution: pixel side the model works at (images are resized to it).
        codec: ``"pixel"`` (:class:`~benchmark.diffusion.PixelCodec`) or ``"vae"`` (pretrained
            AutoencoderKL).
        pixel_factor: space-to-depth factor of the pixel codec.
        max_tokens: text length (CLIP's 77 for Stable Diffusion; 16 at the small profiles).
        unet: ``UNet2DConditionModel`` keyword arguments (channels and size are filled in).
        text: ``CLIPTextConfig`` keyword arguments (vocabulary and length are filled in).
        beta_schedule: ``DDPMScheduler`` beta schedule of from-scratch models.
        prediction_type: the UNet's target for from-scratch models: ``"v_prediction"``
            (Salimans & Ho, 2022; stable at the cosine schedule's high noise levels, where an
            epsilon model's x0 estimate explodes with few sampling steps), ``"epsilon"`` or
            ``"sample"`` (x0 prediction).
        snr_shift: multiplies the signal-to-noise ratio of every training timestep of a
            from-scratch model, SNR'(t) = snr_shift * SNR(t), i.e. log-SNR shifted by
            log(snr_shift) (the "shifted schedule" of Hoogeboom et al., 2023, simple diffusion,
            there with a factor < 1 for large images). A factor k^2 is the schedule that data
            scaled by k would see: images of low contrast (the skin phantom's lesions) keep
            their structure to higher timesteps. 1.0 = the plain ``beta_schedule``.
        pretrained: whether the weights come from ``pretrained`` (paper) or random init.
    """

    profile: str
    resolution: int
    codec: str = "pixel"
    pixel_factor: int = 1
    max_tokens: int = 16
    unet: dict[str, Any] = field(default_factory=dict)
    text: dict[str, Any] = field(default_factory=dict)
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    snr_shift: float = 1.0
    pretrained: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BackboneSpec:
        """From :meth:`as_dict` output (or ``backbone.json``); unknown keys are an error."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a backbone spec must be a mapping, got {d!r}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        missing = [k for k in ("profile", "resolution") if k not in d]
        if unknown or missing:
            raise ValueError(f"backbone spec: unknown key(s) {unknown}, missing {missing}; "
                             f"valid: {', '.join(valid)}")
        return cls(**json.loads(json.dumps(dict(d))))

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def unet_config(blocks: tuple[int, ...], cross: tuple[bool, ...], *, layers: int, heads: int,
                groups: int, cross_dim: int) -> dict[str, Any]:
    """``UNet2DConditionModel`` keyword arguments: one down/up block per entry of ``blocks``,
    with cross-attention where ``cross`` is True."""
    return {
        "block_out_channels": list(blocks),
        "down_block_types": ["CrossAttnDownBlock2D" if c else "DownBlock2D" for c in cross],
        "up_block_types": ["CrossAttnUpBlock2D" if c else "UpBlock2D" for c in reversed(cross)],
        "layers_per_block": layers,
        "attention_head_dim": heads,
        "norm_num_groups": groups,
        "cross_attention_dim": cross_dim,
    }


def text_config(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    """``CLIPTextConfig`` keyword arguments of a small text encoder."""
    return {"hidden_size": hidden, "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "projection_dim": hidden}


# --------------------------------------------------------------------------------------------
# Diffusion training and sampling defaults


@dataclass(frozen=True)
class DiffusionSettings:
    """A profile's defaults for the diffusion stack's options (every option of
    :class:`~benchmark.diffusion.DiffusionGenerator` left ``None`` takes its value here) and
    the backbone it trains.

    Attributes:
        backbone: the model sizes (:class:`BackboneSpec`).
        steps: optimizer steps.
        batch_size: micro-batch size per process.
        grad_accum: micro-batches per optimizer step.
        lr: peak AdamW learning rate.
        warmup_steps: linear warm-up steps.
        lr_schedule: a ``diffusers.optimization.get_scheduler`` name.
        ema_decay: EMA decay of the sampled weights (0 disables EMA).
        mixed_precision: ``no``, ``fp16`` or ``bf16``.
        gradient_checkpointing: trade compute for memory in the UNet.
        checkpoint_every: steps between training checkpoints (resume points).
        sampler: ``dpm-solver`` or ``ddim``.
        sample_steps: sampling steps.
        guidance_scale: classifier-free guidance scale.
        sample_batch_size: images per sampling batch.
        snr_gamma: min-SNR-gamma loss weighting (Hang et al., 2023; 0 = off, plain MSE).
        snr_floor: floor of the same x0-space weight (1 = the truncated-SNR weighting
            max(SNR, 1) of Salimans & Ho, 2022; 0 = off); see
            :func:`benchmark.diffusion.trainer.min_snr_weights`.
        pretrained: weights to start from (a local folder or a hub id in the local cache);
            only the ``paper`` profile has one.
    """

    backbone: BackboneSpec
    steps: int
    batch_size: int
    grad_accum: int
    lr: float
    warmup_steps: int
    lr_schedule: str
    ema_decay: float
    mixed_precision: str
    gradient_checkpointing: bool
    checkpoint_every: int
    sampler: str
    sample_steps: int
    guidance_scale: float
    sample_batch_size: int
    snr_gamma: float = 0.0
    snr_floor: float = 0.0
    pretrained: str | None = None

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The generator options these settings give defaults for (every field but
        ``backbone``)."""
        return tuple(f.name for f in fields(cls) if f.name != "backbone")

    @classmethod
    def option_types(cls) -> dict[str, tuple[type, ...]]:
        """The type(s) each option accepts (from the field annotations; ``None`` excluded)."""
        hints = typing.get_type_hints(cls)
        return {name: tuple(t for t in typing.get_args(hints[name]) or (hints[name],)
                            if t is not type(None))
                for name in cls.option_names()}

    def options(self) -> dict[str, Any]:
        """The option defaults: field name -> value (``backbone`` excluded)."""
        return {name: getattr(self, name) for name in self.option_names()}


# --------------------------------------------------------------------------------------------
# Phantom oracle


@dataclass(frozen=True)
class OracleConfig:
    """Every setting that changes a trained phantom oracle (all of it is in the cache key).

    Attributes:
        image_size: side of the images the oracle reads (other sizes are resized to it; a run
            uses its task's image size).
        n_train: size of the balanced training population.
        epochs: passes over the training population.
        batch_size: minibatch size.
        lr: peak AdamW learning rate (one-cycle cosine schedule).
        weight_decay: AdamW weight decay.
        arch: timm model name (built with ``pretrained=False``).
        arch_kwargs: extra keyword arguments of ``timm.create_model`` (e.g. ResNet widths).
        seed: seeds the population, the initial weights and the minibatch order.
    """

    image_size: int = 64
    n_train: int = 6000
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    arch: str = "resnet10t"
    arch_kwargs: Mapping[str, Any] = field(
        default_factory=lambda: {"channels": [16, 32, 64, 128], "stem_width": 8})
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("image_size", "n_train", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"OracleConfig.{name} must be a positive integer, got {value!r}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ValueError(f"OracleConfig: lr must be > 0 and weight_decay >= 0, got "
                             f"{self.lr!r}, {self.weight_decay!r}")
        # JSON round-trip: a stable, hashable description (lists, not tuples)
        object.__setattr__(self, "arch_kwargs", json.loads(json.dumps(dict(self.arch_kwargs))))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OracleConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown oracle option(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(f.name for f in fields(cls))}")
        return cls(**d)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))
