"""Training-step time of a Stable-Diffusion-v1-4-sized UNet: our trainer vs a plain loop.

Usage::

    python benchmarks/diffusion_step.py [--size sd14|tiny] [--batch-size 8] [--steps 20]
                                        [--warmup 5] [--precision bf16|fp16|no] [--json]

``sd14``: ``UNet2DConditionModel()`` with its default config, which is Stable Diffusion
v1-4's (block channels 320/640/1280/1280, cross-attention dim 768, ~860M parameters), random
init, on 64x64x4 latents with 77x768 text states, batch 8, bf16 autocast, AdamW. ``tiny``
runs the same code on a small UNet (to test the script on a CPU). Three variants, each timed
over ``--steps`` optimizer steps after ``--warmup`` steps (CUDA synchronised around each):

- ``trainer``: :class:`benchmark.diffusion.DiffusionTrainer` (accelerate, EMA on, gradient
  clipping, seeded per-step draws), timed through its ``on_step_end`` hook;
- ``trainer-no-ema``: the same with EMA off;
- ``plain``: a plain diffusers/PyTorch loop (``DDPMScheduler.add_noise``, UNet forward under
  ``torch.autocast``, MSE, backward, ``AdamW.step``), no EMA, no clipping.

Prints median seconds per step and images per second per variant (and JSON with ``--json``),
plus the device name. Results go to ``benchmarks/RESULTS.md`` by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from benchmark.diffusion import (
    Backbone,
    BackboneSpec,
    DiffusionTrainer,
    PixelCodec,
    TrainConfig,
    TrainData,
    TrainingHooks,
)

TINY_UNET = dict(block_out_channels=(32, 64), down_block_types=("DownBlock2D",
                 "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                 layers_per_block=1, cross_attention_dim=64, attention_head_dim=8,
                 norm_num_groups=8, sample_size=16)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_unet(size: str) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel() if size == "sd14" else UNet2DConditionModel(**TINY_UNET)


def shapes(size: str) -> tuple[tuple[int, int, int], int, int]:
    """(latent shape, text length, text width)."""
    return ((4, 64, 64), 77, 768) if size == "sd14" else ((4, 16, 16), 16, 64)


def fake_data(size: str, n: int) -> TrainData:
    (c, h, w), L, D = shapes(size)
    g = torch.Generator().manual_seed(0)
    n_cls = 4
    return TrainData(
        latents=torch.randn(n, c, h, w, generator=g), latent_std=None,
        class_ids=torch.arange(n) % n_cls, prompts=[f"class {i}" for i in range(n_cls)],
        class_embeddings=torch.randn(n_cls, L, D, generator=g),
        uncond_embedding=torch.randn(1, L, D, generator=g), group_ids={}, group_names={},
        finding_ids=torch.zeros(n, dtype=torch.long), findings=["x"])


class _Clock(TrainingHooks):
    def __init__(self, device: str):
        self.device, self.times = device, []
        _sync(device)
        self.last = time.perf_counter()

    def on_step_end(self, step, outputs):
        _sync(self.device)
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def time_trainer(size: str, batch: int, steps: int, warmup: int, precision: str, ema: bool,
                 device: str) -> list[float]:
    unet = make_unet(size)
    spec = BackboneSpec(profile="bench", resolution=shapes(size)[0][1], codec="pixel")
    backbone = Backbone(spec, unet, text_encoder=None, tokenizer=None,  # type: ignore[arg-type]
                        codec=PixelCodec(4, 1), noise_scheduler=DDPMScheduler())
    cfg = TrainConfig(steps=warmup + steps, batch_size=batch, lr=1e-5, ema_decay=0.9999 if ema
                      else 0.0, mixed_precision=precision, checkpoint_every=10 ** 9,
                      log_every=10 ** 9)
    clock = _Clock(device)
    with tempfile.TemporaryDirectory() as work:
        DiffusionTrainer(backbone, fake_data(size, 4 * batch), cfg, work, hooks=clock,
                         progress=False).train()
    return clock.times[warmup:]


def time_plain(size: str, batch: int, steps: int, warmup: int, precision: str,
               device: str) -> list[float]:
    unet = make_unet(size).to(device).train()
    sched = DDPMScheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    (c, h, w), L, D = shapes(size)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device) if precision == "fp16" else None
    x0 = torch.randn(batch, c, h, w, device=device)
    cond = torch.randn(batch, L, D, device=device)
    times = []
    for _ in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,), device=device)
        noisy = sched.add_noise(x0, noise, t)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            pred = unet(noisy, t, encoder_hidden_states=cond).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times[warmup:]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("sd14", "tiny"), default="sd14")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", choices=("bf16", "fp16", "no"), default="bf16")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = args.precision if device == "cuda" else "no"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    common = (args.size, args.batch_size, args.steps, args.warmup, precision)
    results = {}
    for variant, fn in (
        ("plain", lambda: time_plain(*common, device)),
        ("trainer", lambda: time_trainer(*common, True, device)),
        ("trainer-no-ema", lambda: time_trainer(*common, False, device)),
    ):
        times = fn()
        med = statistics.median(times)
        results[variant] = {"s_per_step": round(med, 4),
                            "images_per_s": round(args.batch_size / med, 2), "steps": len(times)}
        if device == "cuda":
            torch.cuda.empty_cache()
    out = {"device": name, "size": args.size, "batch_size": args.batch_size,
           "precision": precision, "torch": torch.__version__, "results": results}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{name}, UNet {args.size}, batch {args.batch_size}, precision {precision}")
        for k, v in results.items():
            print(f"  {k:15s} {v['s_per_step']:.4f} s/step  {v['images_per_s']:.1f} images/s")
    return out


if __name__ == "__main__":
    main()
