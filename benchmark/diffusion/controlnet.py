"""ControlNet on the backbone's UNet (Zhang, Rao & Agrawala, "Adding Conditional Control to
Text-to-Image Diffusion Models", ICCV 2023), at every profile.

:func:`attach_controlnet` builds a diffusers ``ControlNetModel.from_unet`` from the backbone's
UNet (a trainable copy of its encoder and middle block, joined to the frozen UNet by zero
convolutions, so at initialisation the UNet's output is unchanged), stores it as
``backbone.controlnet`` and freezes the UNet. From then on the same code paths use it:

- :class:`~benchmark.diffusion.DiffusionTrainer` trains only the ControlNet when the backbone
  has one (optimizer, EMA, gradient clipping, checkpoints and exact resume as for the UNet;
  the UNet is frozen) and puts each example's control image in the step batch
  (``StepBatch.control``; :func:`~benchmark.diffusion.build_train_data` with
  ``control_column``). The share of empty prompts is the trainer's ``cond_dropout``
  (the ControlNet paper replaces 50% of the prompts by the empty one); the control image is
  kept when the prompt is dropped.
- :func:`~benchmark.diffusion.sample_images` takes one control image per requested image and
  adds the residuals to *both* classifier-free-guidance branches (as diffusers'
  ``StableDiffusionControlNetPipeline`` does outside its guess mode).
- :meth:`Backbone.save_pretrained` writes it to ``controlnet/`` with its own
  ``save_pretrained``; :meth:`Backbone.from_pretrained` reads it back.

The conditioning embedding (a small CNN from the control image in pixel space to the UNet's
input resolution) down-samples by 2^(len(channels) - 1), which must equal the codec's factor
(the pixel codec's space-to-depth factor; 8 for Stable Diffusion's VAE).
:func:`conditioning_embedding_channels` derives the channels from the factor: a prefix of
Stable Diffusion's ``(16, 32, 96, 256)`` (exactly it at factor 8, so published SD ControlNets
fit). Control images are 1 or 3 channels at the backbone's pixel resolution, uint8, seen by
the model as ``value / 255`` in [0, 1] (diffusers' convention; a label mask therefore enters as
``label / 255``, as in Skorupko et al.'s cardiac ControlNet).

At ``paper`` the ControlNet attaches to Stable Diffusion loaded from a local folder (the
``pretrained`` option of the backbone), or starts from a local ControlNet folder
(``ControlNetConfig.pretrained``); nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from .backbone import Backbone

SD_CONDITIONING_CHANNELS: tuple[int, ...] = (16, 32, 96, 256)


@dataclass(frozen=True)
class ControlNetConfig:
    """Options of a ControlNet (plain data; every field has an explicit default).

    Attributes:
        conditioning_channels: channels of the control image: 1 (a mask, a sketch) or 3
            (e.g. stacked masks as RGB).
        conditioning_scale: multiplier of the residuals at sampling (1 = as trained).
        load_weights_from_unet: start the ControlNet's encoder from the UNet's weights (the
            ControlNet paper); False: random init.
        pretrained: a local ControlNet folder (``save_pretrained``) to start from instead of
            the UNet copy; None builds one from the UNet.
        seed: seeds the random init of the conditioning embedding.
    """

    conditioning_channels: int = 1
    conditioning_scale: float = 1.0
    load_weights_from_unet: bool = True
    pretrained: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.conditioning_channels not in (1, 3):
            raise ValueError(f"controlnet: conditioning_channels must be 1 or 3, got "
                             f"{self.conditioning_channels!r}")
        if not self.conditioning_scale >= 0:
            raise ValueError(f"controlnet: conditioning_scale must be >= 0, got "
                             f"{self.conditioning_scale!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def conditioning_embedding_channels(factor: int) -> tuple[int, ...]:
    """Channels of the conditioning embedding that down-samples by ``factor``.

    The embedding has len(channels) - 1 stride-2 stages, so len = log2(factor) + 1: factor 1
    gives (16,), 2 (16, 32), 4 (16, 32, 96), 8 Stable Diffusion's (16, 32, 96, 256); beyond
    8 the last width doubles per extra stage."""
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"controlnet: the codec factor must be a power of 2, got {factor}")
    n = int(math.log2(factor)) + 1
    out = list(SD_CONDITIONING_CHANNELS[:n])
    while len(out) < n:
        out.append(out[-1] * 2)
    return tuple(out)


def build_controlnet(unet: UNet2DConditionModel, factor: int,
                     config: ControlNetConfig = ControlNetConfig()) -> ControlNetModel:
    """A ``ControlNetModel`` for ``unet`` whose conditioning embedding down-samples by
    ``factor`` (seeded; from ``config.pretrained`` when given, checked against the UNet)."""
    if config.pretrained:
        path = Path(config.pretrained).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"controlnet: {path} is not a local ControlNet folder "
                                    "(no config.json); pass a folder written by save_pretrained")
        cn = ControlNetModel.from_pretrained(path, local_files_only=True)
        want = {"conditioning_channels": config.conditioning_channels,
                "cross_attention_dim": unet.config.cross_attention_dim,
                "block_out_channels": list(unet.config.block_out_channels),
                "conditioning_embedding_out_channels": list(
                    conditioning_embedding_channels(factor))}
        for k, v in want.items():
            got = cn.config[k]
            if (list(got) if isinstance(got, (list, tuple)) else got) != v:
                raise ValueError(f"controlnet: {path} has {k}={got!r}, the backbone needs {v!r}")
        return cn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=conditioning_embedding_channels(factor),
            conditioning_channels=config.conditioning_channels,
            load_weights_from_unet=config.load_weights_from_unet)


def attach_controlnet(backbone: Backbone, config: ControlNetConfig = ControlNetConfig()
                      ) -> ControlNetModel:
    """Build a ControlNet for ``backbone`` (see :func:`build_controlnet`), store it as
    ``backbone.controlnet`` and freeze the UNet; returns the ControlNet."""
    cn = build_controlnet(backbone.unet, backbone.codec_factor, config)
    backbone.unet.requires_grad_(False).eval()
    backbone.controlnet = cn
    return cn


def controlled_unet(unet, noisy: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                    *, controlnet=None, control: torch.Tensor | None = None,
                    conditioning_scale: float = 1.0) -> torch.Tensor:
    """The UNet's prediction for ``noisy`` at ``timesteps`` under the cross-attention
    ``context``, with the ControlNet's residuals of ``control`` added to the UNet's skip
    connections and middle block when ``controlnet`` is given:

        (d_1..d_k, m) = ControlNet(x_t, t, c, control) * scale
        f(x_t, t, c) = UNet(x_t, t, c; skip_i + d_i, mid + m)

    (Zhang et al., 2023, Eq. 2; diffusers' ``down_block_additional_residuals`` /
    ``mid_block_additional_residual``). ``control`` is (B, C, R, R) in [0, 1]."""
    if controlnet is None:
        return unet(noisy, timesteps, encoder_hidden_states=context).sample
    if control is None:
        raise ValueError("the backbone has a ControlNet: a control image per example is needed "
                         "(build_train_data(control_column=...) / sample_images(controls=...))")
    down, mid = controlnet(noisy, timesteps, encoder_hidden_states=context,
                           controlnet_cond=control.to(noisy.dtype),
                           conditioning_scale=conditioning_scale, return_dict=False)
    return unet(noisy, timesteps, encoder_hidden_states=context,
                down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
