"""Backbones: the diffusers / transformers classes of Stable Diffusion, at every size.

One code path from a tiny random-init model to Stable Diffusion v1-4: a :class:`Backbone` is
a ``UNet2DConditionModel``, a ``CLIPTextModel`` with the real CLIP BPE tokenizer, a
*codec* between pixels and the UNet's input space, and a ``DDPMScheduler`` for training
(sampling uses DDIM or DPM-Solver built from its config). Profiles change only configs and
weights
(the sizes of each profile are its ``diffusion.backbone``, a :class:`BackboneSpec`, in
``benchmark/profiles.py``):

``paper``
    Stable Diffusion v1-4 from ``pretrained`` (an explicit directory, or a hub id found in the
    local Hugging Face cache; nothing is downloaded), 512 px, its ``AutoencoderKL`` as codec.
``gpu`` / ``cpu`` / ``smoke``
    The same classes with small configs, random init, trained from scratch.
    Their codec is :class:`PixelCodec`, an exact space-to-depth rearrangement (no VAE to
    train): a 64 px grayscale image becomes a 16x16x16 tensor at ``cpu`` (factor 4), so the
    UNet runs at 16x16 with cross-attention only at 4x4; ``gpu`` works in plain pixel space.

Every config is captured: :meth:`Backbone.save_pretrained` writes each part with its
library's ``save_pretrained`` (plus ``backbone.json``) and :meth:`Backbone.from_pretrained`
reads them back from that local directory.

Two optional parts: ``controlnet`` (a ``ControlNetModel`` on the frozen UNet,
:mod:`benchmark.diffusion.controlnet`) and ``context`` (a method's
:class:`~benchmark.diffusion.ContextHook`, :mod:`benchmark.diffusion.context`), saved in
``controlnet/`` and ``context/`` when present.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from transformers import CLIPTextConfig, CLIPTextModel

from ..profiles import PROFILES
from ..settings import SD_V1_4, BackboneSpec
from .tokenizer import CLIP_VOCAB_SIZE, build_clip_tokenizer, check_tokenizer

log = logging.getLogger(__name__)



class PixelCodec(ConfigMixin):
    """Pixels <-> UNet input by an exact space-to-depth rearrangement (``pixel_unshuffle``).

    ``encode`` maps images in [-1, 1] of shape (B, C, H, W) to (B, C f^2, H/f, W/f);
    ``decode`` inverts it exactly. ``factor`` 1 is plain pixel space. Nothing is learned, so
    the small profiles need no VAE training; a larger factor trades spatial resolution of the
    UNet for channels (the UNet is ~f^2 cheaper per step).
    """

    config_name = "codec_config.json"

    @register_to_config
    def __init__(self, image_channels: int = 1, factor: int = 1):
        if factor < 1:
            raise ValueError(f"PixelCodec factor must be >= 1, got {factor}")
        self.image_channels, self.factor = image_channels, factor

    @property
    def latent_channels(self) -> int:
        return self.image_channels * self.factor ** 2

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, std) of the latent distribution; std is None (the map is deterministic)."""
        return F.pixel_unshuffle(images, self.factor), None

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latents, self.factor)

    def to(self, *args, **kwargs) -> PixelCodec:
        return self


class VaeCodec:
    """Pixels <-> scaled latents of a frozen :class:`diffusers.AutoencoderKL`."""

    def __init__(self, vae: AutoencoderKL):
        self.vae = vae.eval().requires_grad_(False)
        self.scale = float(vae.config.scaling_factor)

    @property
    def image_channels(self) -> int:
        return int(self.vae.config.in_channels)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        return dist.mean * self.scale, dist.std * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents.to(self.vae.dtype) / self.scale).sample

    def to(self, *args, **kwargs) -> VaeCodec:
        self.vae.to(*args, **kwargs)
        return self


def resolve_pretrained(path_or_id: str | None) -> Path:
    """A local directory of Stable Diffusion weights: ``path_or_id`` itself when it is a
    directory, else the hub id's snapshot in the local Hugging Face cache. Never downloads."""
    if not path_or_id:
        raise FileNotFoundError(
            "profile 'paper' needs Stable Diffusion weights: pass --pretrained "
            f"/path/to/stable-diffusion-v1-4 (or a hub id such as {SD_V1_4} that is in the "
            "local Hugging Face cache)")
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path_or_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means: not in the cache
        raise FileNotFoundError(
            f"Stable Diffusion weights {path_or_id!r} are not a local directory nor in the local "
            f"Hugging Face cache; get them with `huggingface-cli download {path_or_id}` "
            "(on a machine with network access) or pass --pretrained DIR") from None


@contextlib.contextmanager
def _quiet_loading():
    """No per-file progress bars from transformers while saving / loading the small parts."""
    from transformers.utils import logging as tlog

    was = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tlog.enable_progress_bar()


@dataclass
class Backbone:
    """The parts of a text-conditioned latent diffusion model."""

    spec: BackboneSpec
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: Any  # transformers.CLIPTokenizer
    codec: PixelCodec | VaeCodec
    noise_scheduler: DDPMScheduler
    # optional parts (benchmark.diffusion.controlnet / .context): a ControlNet on the frozen
    # UNet, and the method's map from text states to the cross-attention context
    controlnet: Any = None  # diffusers.ControlNetModel
    context: Any = None  # benchmark.diffusion.ContextHook

    @property
    def codec_factor(self) -> int:
        """Down-sampling of the codec from pixels to the UNet's input (pixel codec: its
        factor; VAE: 2^(number of its blocks - 1), 8 for Stable Diffusion's)."""
        if isinstance(self.codec, VaeCodec):
            return 2 ** (len(self.codec.vae.config.block_out_channels) - 1)
        return self.spec.pixel_factor

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.spec.resolution // self.codec_factor
        return (self.codec.latent_channels, side, side)

    @property
    def image_channels(self) -> int:
        return self.codec.image_channels

    def save_pretrained(self, directory: str | Path, *, unet: UNet2DConditionModel | None = None
                        ) -> None:
        """Write every part with its library's ``save_pretrained`` (``unet`` overrides the
        UNet, e.g. with EMA weights); a ControlNet goes to ``controlnet/``, a context hook to
        ``context/``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (unet or self.unet).save_pretrained(d / "unet")
        for name in ("controlnet", "context"):
            part = getattr(self, name)
            if part is not None:
                part.save_pretrained(d / name)
            elif (d / name).exists():
                shutil.rmtree(d / name)  # a stale part of an earlier save
        with _quiet_loading():
            self.text_encoder.save_pretrained(d / "text_encoder")
        self.tokenizer.save_pretrained(d / "tokenizer")
        self.noise_scheduler.save_pretrained(d / "scheduler")
        if isinstance(self.codec, VaeCodec):
            self.codec.vae.save_pretrained(d / "vae")
        else:
            self.codec.save_config(d / "codec")
        (d / "backbone.json").write_text(json.dumps(asdict(self.spec), indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, context_cls: type | None = None
                        ) -> Backbone:
        """Read a backbone written by :meth:`save_pretrained` from a local directory.

        A saved context hook needs its class (``context_cls``, a ``ContextHook`` subclass)."""
        d = Path(directory)
        if not (d / "backbone.json").is_file():
            raise FileNotFoundError(f"{d}: no backbone.json (not a saved backbone)")
        context = None
        if (d / "context").is_dir():
            if context_cls is None:
                saved = json.loads((d / "context" / "config.json").read_text()).get("_class_name")
                raise ValueError(f"{d / 'context'} holds a context hook ({saved}); pass its class "
                                 "as context_cls")
            context = context_cls.from_pretrained(d / "context", local_files_only=True)
        controlnet = None
        if (d / "controlnet").is_dir():
            from diffusers import ControlNetModel

            controlnet = ControlNetModel.from_pretrained(d / "controlnet", local_files_only=True)
        spec = BackboneSpec.from_dict(json.loads((d / "backbone.json").read_text()))
        from transformers import CLIPTokenizer

        tok = CLIPTokenizer.from_pretrained(str(d / "tokenizer"), local_files_only=True)
        check_tokenizer(tok)
        codec: PixelCodec | VaeCodec
        if (d / "vae").is_dir():
            codec = VaeCodec(AutoencoderKL.from_pretrained(d / "vae", local_files_only=True))
        else:
            codec = PixelCodec.from_config(PixelCodec.load_config(d / "codec"))
        with _quiet_loading():
            text_encoder = CLIPTextModel.from_pretrained(d / "text_encoder",
                                                         local_files_only=True)
        return cls(
            spec=spec,
            unet=UNet2DConditionModel.from_pretrained(d / "unet", local_files_only=True),
            text_encoder=text_encoder,
            tokenizer=tok,
            codec=codec,
            noise_scheduler=DDPMScheduler.from_pretrained(d / "scheduler",
                                                          local_files_only=True),
            controlnet=controlnet,
            context=context,
        )


def backbone_spec(spec: str | BackboneSpec | Mapping[str, Any]) -> BackboneSpec:
    """A :class:`BackboneSpec` from a profile name (that profile's ``diffusion.backbone``), a
    spec, or a spec's dict (as saved in a resolved config)."""
    if isinstance(spec, BackboneSpec):
        return spec
    if isinstance(spec, str):
        if spec not in PROFILES:
            raise ValueError(f"no diffusion backbone for profile {spec!r}; "
                             f"valid: {', '.join(PROFILES.names())}")
        return PROFILES.get(spec).diffusion.backbone
    return BackboneSpec.from_dict(spec)


def build_backbone(spec: str | BackboneSpec | Mapping[str, Any], *, image_channels: int,
                   pretrained: str | None = None, seed: int = 0) -> Backbone:
    """A backbone of ``spec`` (a profile name, a :class:`BackboneSpec` or its dict): random
    init when it trains from scratch (seeded), Stable Diffusion weights from ``pretrained``
    when ``spec.pretrained``. ``image_channels`` is the task's (1 or 3)."""
    spec = backbone_spec(spec)
    if spec.pretrained:
        return _load_stable_diffusion(spec, pretrained)
    if pretrained:
        raise ValueError(f"backbone {spec.profile!r} trains from scratch; 'pretrained' is only "
                         "for a pretrained backbone (profile 'paper')")
    codec = PixelCodec(image_channels=image_channels, factor=spec.pixel_factor)
    side = spec.resolution // spec.pixel_factor
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the random init is part of the run's seed
    try:
        unet = UNet2DConditionModel(sample_size=side, in_channels=codec.latent_channels,
                                    out_channels=codec.latent_channels, **spec.unet)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=CLIP_VOCAB_SIZE, max_position_embeddings=spec.max_tokens,
            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **spec.text))
    finally:
        torch.random.set_rng_state(gen_state)
    tokenizer = build_clip_tokenizer(spec.max_tokens)
    sched = training_scheduler(spec)
    text_encoder.requires_grad_(False).eval()
    return Backbone(spec, unet, text_encoder, tokenizer, codec, sched)


def shifted_betas(alphas_cumprod: torch.Tensor, snr_shift: float) -> torch.Tensor:
    """Betas of the schedule whose SNR is ``snr_shift`` times that of ``alphas_cumprod``.

    With SNR(t) = abar_t / (1 - abar_t), SNR'(t) = s SNR(t) gives
    abar'_t = s abar_t / (1 + (s - 1) abar_t), and beta'_t = 1 - abar'_t / abar'_{t-1}
    (abar'_{-1} = 1): the schedule diffusers' schedulers read from ``trained_betas``."""
    a = alphas_cumprod.double()
    shifted = snr_shift * a / (1 + (snr_shift - 1) * a)
    prev = torch.cat([torch.ones(1, dtype=shifted.dtype), shifted[:-1]])
    return (1 - shifted / prev).float()


def training_scheduler(spec: BackboneSpec) -> DDPMScheduler:
    """The ``DDPMScheduler`` of a from-scratch backbone: ``spec.beta_schedule`` over 1,000
    timesteps, its SNR multiplied by ``spec.snr_shift`` (:func:`shifted_betas`) when that is
    not 1, predicting ``spec.prediction_type``."""
    if not spec.snr_shift > 0:
        raise ValueError(f"snr_shift must be > 0 (1 = no shift), got {spec.snr_shift!r}")
    kwargs: dict[str, Any] = dict(num_train_timesteps=1000, beta_schedule=spec.beta_schedule,
                                  prediction_type=spec.prediction_type, clip_sample=False)
    if spec.snr_shift != 1.0:
        base = DDPMScheduler(**kwargs)
        kwargs["trained_betas"] = shifted_betas(base.alphas_cumprod,
                                                spec.snr_shift).tolist()
    return DDPMScheduler(**kwargs)


def _load_stable_diffusion(spec: BackboneSpec, pretrained: str | None) -> Backbone:
    from transformers import CLIPTokenizer

    root = resolve_pretrained(pretrained)
    missing = [s for s in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
               if not (root / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: not a Stable Diffusion folder (missing "
                                f"{', '.join(missing)}/)")
    tok = CLIPTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True)
    check_tokenizer(tok)
    vae = AutoencoderKL.from_pretrained(root / "vae", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", local_files_only=True)
    text_encoder.requires_grad_(False).eval()
    unet = UNet2DConditionModel.from_pretrained(root / "unet", local_files_only=True)
    sched = DDPMScheduler.from_pretrained(root / "scheduler", local_files_only=True)
    log.info("loaded Stable Diffusion weights from %s", root)
    spec = BackboneSpec(**{**asdict(spec), "max_tokens": int(tok.model_max_length),
                           "prediction_type": sched.config.prediction_type})
    return Backbone(spec, unet, text_encoder, tok, VaeCodec(vae), sched)


@torch.no_grad()
def encode_prompts(backbone: Backbone, prompts: list[str], *, batch_size: int = 64
                   ) -> torch.Tensor:
    """Frozen text-encoder hidden states (N, max_tokens, D) of ``prompts``.

    A prompt longer than the text encoder's context is an error (no silent truncation)."""
    tok, enc = backbone.tokenizer, backbone.text_encoder
    L = backbone.spec.max_tokens
    for p in prompts:
        n = len(tok(p).input_ids)
        if n > L:
            raise ValueError(f"prompt {p!r} has {n} tokens; the {backbone.spec.profile} text "
                             f"encoder holds {L}: use a shorter prompt style")
    device = next(enc.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        ids = tok(prompts[i:i + batch_size], padding="max_length", max_length=L,
                  truncation=False, return_tensors="pt").input_ids.to(device)
        out.append(enc(ids)[0].float().cpu())
    return torch.cat(out) if out else torch.zeros(0, L, enc.config.hidden_size)
