"""Run profiles: the one place where per-profile settings live; both the Python API and the
CLI read them.

A profile changes sizes and steps, never the code path. Each :class:`Profile` is one block
holding every per-profile setting:

- evaluation sizes (phantom size, how many real and synthetic images the generation metrics
  score, bootstrap replicates, ...). Measured on 2 CPU cores, InceptionV3 at 299 px scores
  only a few images per second, so each profile fixes how many real and synthetic images FID
  scores; the result records those counts beside every FID;
- ``diffusion``: the defaults of the shared diffusion stack's options and its backbone sizes
  (:class:`~benchmark.settings.DiffusionSettings`, :class:`~benchmark.settings.BackboneSpec`);
- ``oracle``: the phantom oracle's training (:class:`~benchmark.settings.OracleConfig`);
- ``downstream``: the downstream classifiers (:class:`~benchmark.downstream.DownstreamConfig`).

A method whose own options have per-profile defaults derives them from the Profile in its
``profile_defaults`` classmethod (see :meth:`benchmark.Generator.profile_defaults`). The whole
profile is part of every run's ``config.json`` (and so of its config hash), and each
generator's options are resolved against it before that file is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .downstream.config import DownstreamConfig
from .registry import Registry
from .settings import (
    SD_V1_4,
    BackboneSpec,
    DiffusionSettings,
    OracleConfig,
    text_config,
    unet_config,
)


@dataclass(frozen=True)
class Profile:
    """Sizes for one kind of run.

    Attributes:
        name: profile name.
        description: one line for ``benchmark --help`` listings.
        phantom_images: number of images a phantom dataset generates (real datasets ignore it).
        eval_real: most real test images scored by the generation metrics.
        eval_synthetic: most synthetic images scored by the generation metrics.
        diffusion: defaults of the diffusion stack's options and its backbone sizes.
        feature_batch_size: batch size of the feature extractor.
        synthetic_ratio: synthetic budget as a fraction of the training-set size.
        bootstrap_resamples: bootstrap replicates behind every generation metric's confidence
            interval (0: no intervals).
        diversity_pairs: most image pairs per class for the mean pairwise diversity.
        oracle: the phantom oracle's training setting (its ``image_size`` is replaced by the
            task's).
        downstream: the downstream classifiers' settings (see
            :class:`~benchmark.downstream.DownstreamConfig`, whose defaults are the table).
    """

    name: str
    description: str
    phantom_images: int
    eval_real: int
    eval_synthetic: int
    diffusion: DiffusionSettings
    feature_batch_size: int = 24  # fastest measured on 2 CPU cores (16-24 > 32 > 64)
    synthetic_ratio: float = 0.5
    bootstrap_resamples: int = 100
    diversity_pairs: int = 500
    oracle: OracleConfig = field(default_factory=OracleConfig)
    downstream: DownstreamConfig = field(default_factory=DownstreamConfig)

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: Registry[Profile] = Registry("profile")

for _p in (
    # ---- smoke ------------------------------------------------------------------------------
    Profile(
        name="smoke",
        description="seconds; for tests and a first look (tiny data, a few dozen images scored)",
        phantom_images=240,
        eval_real=24,
        eval_synthetic=24,
        bootstrap_resamples=20,
        diversity_pairs=50,
        diffusion=DiffusionSettings(
            steps=30, batch_size=16, grad_accum=1, lr=2e-3, warmup_steps=0,
            lr_schedule="constant", ema_decay=0.9, mixed_precision="no",
            gradient_checkpointing=False, checkpoint_every=10, sampler="dpm-solver",
            sample_steps=4, guidance_scale=2.0, sample_batch_size=64, snr_gamma=5.0,
            backbone=BackboneSpec(
                profile="smoke", resolution=32, pixel_factor=2, max_tokens=16,
                unet=unet_config((16, 32), (False, True), layers=1, heads=8, groups=8,
                                 cross_dim=32),
                text=text_config(32, 1, 2),
            ),
        ),
        # a fast oracle for tests and smoke runs (32 px, small population, few epochs)
        oracle=OracleConfig(image_size=32, n_train=900, epochs=12, batch_size=32, lr=3e-3),
        downstream=DownstreamConfig(image_size=32, epochs=1, batch_size=32, min_group_size=2,
                                    sdm_images_per_class=8, cpu_threads=1),
    ),
    # ---- cpu --------------------------------------------------------------------------------
    Profile(
        name="cpu",
        description="the default: minutes on a 2-core laptop CPU on the phantom",
        phantom_images=3000,
        eval_real=400,
        eval_synthetic=400,
        # the recipe of benchmarks/RESULTS.md ("cpu-profile diffusion recipe"): a text
        # encoder without transformer layers (a random causal transformer washes the words
        # that tell two prompts apart into the shared prefix; 2026-12-02); x0 prediction with
        # the x0-space loss weight clamp(SNR, 1, 20) (v / eps prediction must carry the
        # 48 white noise channels of an RGB image at codec factor 4 through a 64-wide first
        # level: the skin phantom sampled colour noise; x0 prediction removed the chest's
        # grain, FID 160 -> 95; the cap 20 sharpens the lesions, skin adherence 0.28 at cap
        # 5 -> 0.59; 2026-12-07); bfloat16 autocast where the CPU has it (1.2x a training
        # step, 2x a sampling step) and 2,400 steps of batch 16 (skin adherence 0.42 at 2,000)
        diffusion=DiffusionSettings(
            steps=2400, batch_size=16, grad_accum=1, lr=1e-3, warmup_steps=20,
            lr_schedule="cosine", ema_decay=0.99, mixed_precision="bf16",
            gradient_checkpointing=False, checkpoint_every=200, sampler="dpm-solver",
            sample_steps=10, guidance_scale=2.0, sample_batch_size=128, snr_gamma=20.0,
            snr_floor=1.0,
            backbone=BackboneSpec(
                profile="cpu", resolution=64, pixel_factor=4, max_tokens=16,
                unet=unet_config((64, 96, 128), (False, False, True), layers=1, heads=8,
                                 groups=16, cross_dim=64),
                text=text_config(64, 0, 2), prediction_type="sample",
            ),
        ),
        # 32 px keeps the three classifiers of a run at about a minute on 2 cores; 40 images
        # a class keep the saliency diversity metric's Inception pass (synthetic images the
        # generation metrics did not score, and the val split once) under a minute
        downstream=DownstreamConfig(image_size=32, epochs=5, batch_size=64,
                                    sdm_images_per_class=40, cpu_threads=1),
    ),
    # ---- gpu --------------------------------------------------------------------------------
    Profile(
        name="gpu",
        description="larger from-scratch models and evaluation sets; needs a GPU",
        phantom_images=20000,
        eval_real=5000,
        eval_synthetic=5000,
        feature_batch_size=128,
        diffusion=DiffusionSettings(
            steps=20000, batch_size=64, grad_accum=1, lr=2e-4, warmup_steps=500,
            lr_schedule="cosine", ema_decay=0.9999, mixed_precision="bf16",
            gradient_checkpointing=False, checkpoint_every=1000, sampler="dpm-solver",
            sample_steps=25, guidance_scale=2.0, sample_batch_size=256,
            backbone=BackboneSpec(
                profile="gpu", resolution=64, pixel_factor=1, max_tokens=32,
                unet=unet_config((128, 256, 256, 512), (False, True, True, True), layers=2,
                                 heads=8, groups=32, cross_dim=256),
                # no transformer layers, as at cpu (by analogy; not measured at this size)
                text=text_config(256, 0, 4),
            ),
        ),
        downstream=DownstreamConfig(backbones=("resnet50", "efficientnet-b0"), epochs=30,
                                    patience=5, batch_size=128, lr=1e-3,
                                    feature_heads=("knn", "gbdt")),
    ),
    # ---- paper ------------------------------------------------------------------------------
    Profile(
        name="paper",
        description="pretrained Stable Diffusion at the papers' settings; needs weights and a GPU",
        phantom_images=20000,
        eval_real=10000,
        eval_synthetic=10000,
        feature_batch_size=128,
        # FairGen's fine-tuning recipe (Stable Diffusion v1-4, 512 px, batch 8 x accumulation
        # 4, lr 1e-5 cosine, 15k steps, EMA, mixed precision, gradient checkpointing)
        diffusion=DiffusionSettings(
            pretrained=SD_V1_4, steps=15000, batch_size=8, grad_accum=4, lr=1e-5,
            warmup_steps=0,
            lr_schedule="cosine", ema_decay=0.9999, mixed_precision="fp16",
            gradient_checkpointing=True, checkpoint_every=1000, sampler="dpm-solver",
            sample_steps=50, guidance_scale=7.5, sample_batch_size=16,
            backbone=BackboneSpec(profile="paper", resolution=512, codec="vae", max_tokens=77,
                                  beta_schedule="scaled_linear", prediction_type="epsilon",
                                  pretrained=True),
        ),
        downstream=DownstreamConfig(backbones=("resnet50", "efficientnet-b0", "vit-b16"),
                                    pretrained=True, image_size=224, epochs=30, patience=5,
                                    batch_size=64, lr=1e-4, weight_decay=0.05,
                                    feature_heads=("knn", "gbdt")),
    ),
):
    PROFILES.register(_p.name, _p)

DEFAULT_PROFILE = "cpu"
