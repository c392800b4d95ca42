"""Sampling with classifier-free guidance: batched, seeded per image, resumable.

A thin loop over the UNet and a sampling scheduler (DDIM or DPM-Solver++ built from the
training scheduler's config), as in diffusers' pipelines. Image i of a request starts from
noise seeded by (seed, i) alone and both samplers are deterministic, so an image does not
depend on the batch it is drawn in; finished batches are stored as ``.npy`` shards in
``cache_dir`` (written atomically) and skipped when sampling is resumed; the shards' folder is
keyed by the request and a digest of the model's weights (UNet, text encoder, VAE), so shards
of another model are never reused.

Classifier-free guidance (Ho & Salimans, 2022): eps = eps(x, "") + w (eps(x, c) - eps(x, "")),
``guidance_scale`` w (1 = no guidance; the models are trained with 10% empty prompts).

With a ControlNet on the backbone, each requested image has a control image (``controls``)
whose residuals go into *both* branches: eps(x, "", control) and eps(x, c, control). With a
context hook, both branches go through it (the empty-prompt branch flagged as dropped), with
the image's ``group_ids``. Control images, group ids and the ControlNet's and hook's weights
are part of the shard cache key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..markers import module_digest
from .backbone import Backbone, encode_prompts
from .controlnet import controlled_unet
from .data import control_to_tensor
from .trainer import effective_precision

log = logging.getLogger(__name__)

SAMPLERS: tuple[str, ...] = ("dpm-solver", "ddim")


def sampling_scheduler(backbone: Backbone, sampler: str):
    """A sampling scheduler built from the training scheduler's config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    # explicit values only: diffusers' private "_use_default_values" would otherwise make a
    # freshly built and a reloaded training scheduler give different sampling schedulers
    cfg = {k: v for k, v in backbone.noise_scheduler.config.items() if not k.startswith("_")}
    # "trailing" spacing starts at the last training timestep (Lin et al., 2024): better with
    # the few steps of the small profiles
    cfg["timestep_spacing"] = "trailing"
    # in pixel space the data range is known: clip every x0 estimate to [-1, 1]
    clip = backbone.spec.codec == "pixel"
    if sampler == "ddim":
        return DDIMScheduler.from_config(cfg, clip_sample=clip, clip_sample_range=1.0,
                                         set_alpha_to_one=False)
    if sampler == "dpm-solver":
        return DPMSolverMultistepScheduler.from_config(
            cfg, algorithm_type="dpmsolver++", solver_order=2, thresholding=clip,
            dynamic_thresholding_ratio=1.0, sample_max_value=1.0)
    raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")


def _noise(shape: tuple[int, ...], seed: int, index: int) -> torch.Tensor:
    h = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))
    return torch.randn(shape, generator=g)


@torch.no_grad()
def sample_images(backbone: Backbone, prompts: list[str], *, seed: int, steps: int = 20,
                  guidance_scale: float = 2.0, sampler: str = "dpm-solver",
                  batch_size: int = 64, device: str | torch.device = "cpu",
                  cache_dir: str | Path | None = None, progress: bool = True,
                  unet=None, controls=None, conditioning_scale: float = 1.0,
                  group_ids: dict[str, list[int]] | None = None,
                  mixed_precision: str = "no") -> np.ndarray:
    """Generate one image per prompt; return uint8 pixels (N, C, R, R) in the model's
    channels and resolution. ``unet`` overrides the backbone's (e.g. EMA weights).

    ``controls``: one control image per prompt when the backbone has a ControlNet (uint8
    (N, Cc, R, R) at the model's resolution, or a list of PIL images / uint8 arrays, made so
    by :func:`~benchmark.diffusion.data.control_to_tensor`); ``conditioning_scale`` scales
    its residuals. ``group_ids``: per attribute, one group index per prompt, for the
    backbone's context hook. ``mixed_precision``: the UNet (and ControlNet) calls run under
    autocast in that precision where the device has it
    (:func:`~benchmark.diffusion.trainer.effective_precision`; bf16 on a CPU with native
    bfloat16 makes a cpu-profile sampling step ~2x faster); the sampler's arithmetic stays
    float32."""
    unet = (unet or backbone.unet).to(device).eval()
    precision = effective_precision(mixed_precision, str(device))
    autocast = _autocast(precision, str(device))
    controlnet, context = backbone.controlnet, backbone.context
    control_arr = _controls(backbone, controls, len(prompts))
    if context is not None:
        if group_ids is None or any(len(v) != len(prompts) for v in group_ids.values()):
            raise ValueError(f"the backbone has a context hook: group_ids needs one group index "
                             f"per prompt ({len(prompts)}) for each attribute")
        gids = {a: torch.as_tensor(list(v), dtype=torch.long) for a, v in group_ids.items()}
        context.to(device).eval()
    if controlnet is not None:
        controlnet.to(device).eval()
    codec = backbone.codec.to(device)
    shape = backbone.latent_shape
    uniq = sorted(set(prompts))
    emb = encode_prompts(backbone, [*uniq, ""]).to(device, unet.dtype)
    cond_of = {p: i for i, p in enumerate(uniq)}
    uncond = emb[-1:]
    sched = sampling_scheduler(backbone, sampler)
    # the shards are keyed by everything an image depends on, the weights included: a
    # retrained model never reads the shards of an older one
    vae = getattr(codec, "vae", None)
    key_parts = {"prompts": prompts, "seed": seed, "steps": steps, "w": guidance_scale,
                 "sampler": sampler, "batch": batch_size, "shape": shape,
                 "weights": module_digest(unet, backbone.text_encoder, vae)}
    if precision != "no":  # (float32 keeps the keys of earlier shards)
        key_parts["precision"] = precision
    if controlnet is not None:
        key_parts.update(controls=hashlib.sha256(control_arr.tobytes()).hexdigest(),
                         conditioning_scale=conditioning_scale,
                         controlnet=module_digest(controlnet))
    if context is not None:
        key_parts.update(group_ids={a: v.tolist() for a, v in sorted(gids.items())},
                         context=module_digest(context))
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:16]
    shard_dir = Path(cache_dir) / f"samples-{key}" if cache_dir is not None else None
    if shard_dir is not None:
        shard_dir.mkdir(parents=True, exist_ok=True)
    out = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="sampling", leave=False, disable=not progress):
        shard = shard_dir / f"shard-{start:07d}.npy" if shard_dir is not None else None
        batch = prompts[start:start + batch_size]
        n = len(batch)
        if shard is not None and shard.is_file():
            arr = _read_shard(shard, n)
            if arr is not None:
                out.append(arr)
                continue
        x = torch.stack([_noise(shape, seed, start + i) for i in range(n)]).to(device)
        x = x * sched.init_noise_sigma
        cond = emb[[cond_of[p] for p in batch]]
        both = torch.cat([uncond.expand(n, -1, -1), cond])
        if context is not None:
            g = {a: torch.cat([v[start:start + n]] * 2).to(device) for a, v in gids.items()}
            dropped = torch.arange(2 * n, device=device) < n  # the empty-prompt branch
            both = context(both, g, dropped).to(unet.dtype)
        control = None
        if controlnet is not None:
            c = torch.from_numpy(control_arr[start:start + n]).to(device).float() / 255
            control = torch.cat([c, c])  # the same control in both guidance branches
        sched.set_timesteps(steps, device=device)
        for t in sched.timesteps:
            xin = sched.scale_model_input(torch.cat([x, x]), t)
            with autocast:
                eps = controlled_unet(unet, xin.to(unet.dtype), t, both,
                                      controlnet=controlnet, control=control,
                                      conditioning_scale=conditioning_scale).float()
            e_u, e_c = eps.chunk(2)
            x = sched.step(e_u + guidance_scale * (e_c - e_u), t, x).prev_sample
        img = codec.decode(x).float()
        arr = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
        if shard is not None:
            tmp = shard.with_name(f".{shard.name}.tmp.npy")
            np.save(tmp, arr)
            os.replace(tmp, shard)
        out.append(arr)
    if not out:
        c = backbone.image_channels
        return np.zeros((0, c, backbone.spec.resolution, backbone.spec.resolution), np.uint8)
    return np.concatenate(out)


def _autocast(precision: str, device: str):
    """An autocast context for ``precision`` (``no``: a context that does nothing)."""
    if precision == "no":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def _read_shard(shard: Path, n: int) -> np.ndarray | None:
    """A finished shard of ``n`` uint8 images, or None (with one warning line naming the file)
    when it is damaged: it is then removed and regenerated."""
    try:
        arr = np.load(shard, allow_pickle=False)
        if arr.dtype != np.uint8 or arr.ndim != 4 or len(arr) != n:
            raise ValueError(f"{arr.dtype} array of shape {arr.shape}, expected {n} uint8 images")
    except (OSError, ValueError, EOFError) as err:
        log.warning("regenerating damaged sample shard %s (%s)", shard,
                    " ".join(str(err).split())[:120])
        shard.unlink(missing_ok=True)
        return None
    return arr


def _controls(backbone: Backbone, controls, n: int) -> np.ndarray | None:
    """The control images as one uint8 array (n, Cc, R, R), checked against the ControlNet."""
    cn = backbone.controlnet
    if cn is None:
        if controls is not None:
            raise ValueError("control images were given but the backbone has no ControlNet "
                             "(benchmark.diffusion.attach_controlnet)")
        return None
    if controls is None:
        raise ValueError("the backbone has a ControlNet: pass one control image per prompt "
                         "(controls=...)")
    ch, res = int(cn.config.conditioning_channels), backbone.spec.resolution
    if isinstance(controls, np.ndarray) and controls.ndim == 4:
        arr = controls
    else:
        arr = np.stack([control_to_tensor(c, channels=ch, resolution=res).numpy()
                        for c in controls]) if len(controls) else np.zeros((0, ch, res, res),
                                                                           np.uint8)
    if arr.dtype != np.uint8 or arr.shape != (n, ch, res, res):
        raise ValueError(f"controls must be uint8 of shape {(n, ch, res, res)} (one per prompt), "
                         f"got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)
