"""The diffusion Generator: the shared base of every text-conditioned diffusion method.

:class:`DiffusionGenerator` is a :class:`benchmark.Generator` *and* the trainer's
:class:`TrainingHooks`, so a method is a small subclass that sets ``name`` and
``description`` and overrides the hooks that make it distinctive (see
:mod:`benchmark.diffusion.trainer` for the hooks): ``sd-finetune`` overrides nothing, CBRS and
SQRS override ``sampler_weights``, CBDM ``training_loss``, FairDiffusion ``sample_weights``,
``on_step_end`` and ``state_dict``. A subclass that adds options extends ``default_config``:
``default_config = {**DiffusionGenerator.default_config, "gamma": 0.25}``.

Options left ``None`` take the run profile's default (:data:`PROFILE_DEFAULTS`); the
resolved options are saved with the fitted model (``fit_info.json``).

``fit`` builds the profile's backbone (:func:`build_backbone`), encodes the training set
(:func:`build_train_data`), trains with :class:`DiffusionTrainer` in ``<work_dir>/diffusion``
(checkpoints there make an interrupted fit resumable) and keeps the EMA UNet. ``sample``
turns each plan cell into its prompt with :func:`build_prompt` (the same style as training)
and draws ``count`` images with classifier-free guidance.

Multi-GPU: the trainer is data-parallel under ``accelerate launch`` (each process takes its
slice of every global batch; the main process writes checkpoints). The harness stages after
``fit`` (sampling, evaluation, the result record) are not yet split across processes, so a
multi-GPU run should train with ``accelerate launch`` and sample/evaluate in one process
(re-running ``benchmark run`` resumes from the saved checkpoint).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import torch

from ..generators import FitContext, Generator, Plan
from ..schema import COLUMNS, FEATURES
from ..tasks import Task
from .backbone import SD_V1_4, Backbone, build_backbone
from .data import build_train_data, tensor_to_image
from .prompts import PROMPT_STYLES, build_prompt
from .sampling import SAMPLERS, sample_images
from .trainer import DiffusionTrainer, TrainConfig, TrainingHooks

log = logging.getLogger(__name__)

# Per-profile defaults of the options left None. smoke / cpu: min-SNR-5 loss weighting and 800
# steps at cpu (benchmarks/RESULTS.md, "cpu-profile diffusion recipe": at equal steps min-SNR
# lowers fd_oracle 84 -> 63 and FID 308 -> 240; 800 steps keep cbdm, the slowest step, inside
# the 10-minute run). "paper" is FairGen's fine-tuning recipe
# (Stable Diffusion v1-4, 512 px, batch 8 x accumulation 4, lr 1e-5 cosine, 15k steps, EMA,
# mixed precision, gradient checkpointing).
PROFILE_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "smoke": dict(steps=30, batch_size=16, grad_accum=1, lr=2e-3, warmup_steps=0,
                  lr_schedule="constant", ema_decay=0.9, mixed_precision="no",
                  gradient_checkpointing=False, checkpoint_every=10, sampler="dpm-solver",
                  sample_steps=4, guidance_scale=2.0, sample_batch_size=64, snr_gamma=5.0),
    "cpu": dict(steps=800, batch_size=32, grad_accum=1, lr=1e-3, warmup_steps=20,
                lr_schedule="cosine", ema_decay=0.99, mixed_precision="no",
                gradient_checkpointing=False, checkpoint_every=100, sampler="dpm-solver",
                sample_steps=10, guidance_scale=2.0, sample_batch_size=128, snr_gamma=5.0),
    "gpu": dict(steps=20000, batch_size=64, grad_accum=1, lr=2e-4, warmup_steps=500,
                lr_schedule="cosine", ema_decay=0.9999, mixed_precision="bf16",
                gradient_checkpointing=False, checkpoint_every=1000, sampler="dpm-solver",
                sample_steps=25, guidance_scale=2.0, sample_batch_size=256, snr_gamma=0.0),
    "paper": dict(pretrained=SD_V1_4, steps=15000, batch_size=8, grad_accum=4, lr=1e-5,
                  warmup_steps=0,
                  lr_schedule="cosine", ema_decay=0.9999, mixed_precision="fp16",
                  gradient_checkpointing=True, checkpoint_every=1000, sampler="dpm-solver",
                  sample_steps=50, guidance_scale=7.5, sample_batch_size=16, snr_gamma=0.0),
}

_TRAIN_KEYS = ("steps", "batch_size", "grad_accum", "lr", "lr_schedule", "warmup_steps",
               "ema_decay", "mixed_precision", "gradient_checkpointing", "checkpoint_every",
               "snr_gamma")
_SAMPLE_KEYS = ("sampler", "sample_steps", "guidance_scale", "sample_batch_size")


class DiffusionGenerator(Generator, TrainingHooks):
    """Base of the diffusion methods; on its own it is plain fine-tuning (``sd-finetune``)."""

    name = ""
    description = ""
    default_config: Mapping[str, Any] = {
        "backbone": None,  # profile of the backbone; None = the run's profile
        # Stable Diffusion folder or a hub id in the local HF cache (profile paper; default
        # CompVis/stable-diffusion-v1-4 from the cache)
        "pretrained": None,
        "prompt_style": "fairgen",
        "cond_dropout": 0.1,
        **{k: None for k in _TRAIN_KEYS},
        **{k: None for k in _SAMPLE_KEYS},
    }

    def __init__(self, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        if self.config["prompt_style"] not in PROMPT_STYLES:
            raise ValueError(f"{self.name}: prompt_style must be one of "
                             f"{', '.join(PROMPT_STYLES)}, got {self.config['prompt_style']!r}")
        if self.config["sampler"] not in (None, *SAMPLERS):
            raise ValueError(f"{self.name}: sampler must be one of {', '.join(SAMPLERS)}, got "
                             f"{self.config['sampler']!r}")
        self.backbone: Backbone | None = None
        self.task: Task | None = None
        self.resolved: dict[str, Any] = {}
        self.device = "cpu"
        self.sample_cache: Path | None = None

    # -- options ----------------------------------------------------------------------------
    def resolve(self, profile: str) -> dict[str, Any]:
        """The options with every None replaced by the profile's default."""
        backbone = self.config["backbone"] or profile
        if backbone not in PROFILE_DEFAULTS:
            raise ValueError(f"{self.name}: no diffusion defaults for profile {backbone!r}; "
                             f"valid: {', '.join(PROFILE_DEFAULTS)}")
        defaults = PROFILE_DEFAULTS[backbone]
        out = {k: (defaults[k] if v is None and k in defaults else v)
               for k, v in self.config.items()}
        out["backbone"] = backbone
        return out

    def train_config(self, seed: int) -> TrainConfig:
        r = self.resolved
        return TrainConfig(**{k: r[k] for k in _TRAIN_KEYS}, cond_dropout=r["cond_dropout"],
                           seed=seed)

    # -- Generator --------------------------------------------------------------------------
    def fit(self, train: datasets.Dataset, ctx: FitContext) -> None:
        self.resolved = self.resolve(ctx.profile)
        self.task, self.device = ctx.task, ctx.device
        work = Path(ctx.work_dir) if ctx.work_dir is not None else None
        if work is None:
            import tempfile

            work = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.backbone = build_backbone(self.resolved["backbone"],
                                       image_channels=ctx.task.channels,
                                       pretrained=self.resolved["pretrained"], seed=ctx.seed)
        data = build_train_data(self.backbone, train, ctx.task,
                                prompt_style=self.resolved["prompt_style"], device=ctx.device,
                                progress=self.progress)
        trainer = DiffusionTrainer(self.backbone, data, self.train_config(ctx.seed),
                                   work / "diffusion", hooks=self, progress=self.progress)
        result = trainer.train()
        self.backbone.unet = result.unet
        self.sample_cache = work / "diffusion"
        log.info("%s: trained %d steps in %.1f s (final loss %.4f)", self.name,
                 result.end_step - result.start_step, result.seconds,
                 result.losses[-1]["loss"] if result.losses else float("nan"))

    def prompts_for(self, plan: Plan) -> list[str]:
        """One prompt per image of the plan, in plan order."""
        assert self.task is not None
        out: list[str] = []
        for row in plan.rows:
            out += [build_prompt(self.task, row.attributes, row.finding,
                                 style=self.resolved["prompt_style"])] * row.count
        return out

    def sample(self, plan: Plan) -> datasets.Dataset:
        if self.backbone is None or self.task is None:
            raise RuntimeError(f"{self.name}: call fit() or load() before sample()")
        if plan.task != self.task.name:
            raise ValueError(f"{self.name}: plan is for task {plan.task!r}, the model was "
                             f"trained on {self.task.name!r}")
        r = self.resolved
        prompts = self.prompts_for(plan)
        pixels = sample_images(self.backbone, prompts, seed=plan.seed, steps=r["sample_steps"],
                               guidance_scale=r["guidance_scale"], sampler=r["sampler"],
                               batch_size=r["sample_batch_size"], device=self.device,
                               cache_dir=self.sample_cache, progress=self.progress)
        rows: dict[str, list] = {c: [] for c in COLUMNS}
        i = 0
        for row in plan.rows:
            for _ in range(row.count):
                img = tensor_to_image(torch.from_numpy(pixels[i]).float() / 127.5 - 1,
                                      channels=self.task.channels, size=self.task.image_size)
                rec = {c: None for c in COLUMNS}
                rec.update(row.attributes)
                sid = f"{self.name}-{i:06d}"
                rec.update(sample_id=sid, patient_id=sid, split="train", image=img,
                           finding=row.finding, labels=[row.finding],
                           source=f"synthetic:{self.name}")
                for c in COLUMNS:
                    rows[c].append(rec[c])
                i += 1
        return datasets.Dataset.from_dict(rows, features=FEATURES)

    def save(self, directory: str | Path) -> None:
        super().save(directory)
        if self.backbone is None or self.task is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit()")
        d = Path(directory)
        self.backbone.save_pretrained(d / "backbone")
        (d / "fit_info.json").write_text(json.dumps(
            {"task": self.task.as_dict(), "resolved": self.resolved, "method_state":
             _jsonable(self.state_dict())}, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path) -> DiffusionGenerator:
        gen = super().load(directory)
        assert isinstance(gen, DiffusionGenerator)
        d = Path(directory)
        info = json.loads((d / "fit_info.json").read_text())
        gen.task = Task.from_dict(info["task"])
        gen.resolved = info["resolved"]
        gen.backbone = Backbone.from_pretrained(d / "backbone")
        gen.device = "cuda" if torch.cuda.is_available() else "cpu"
        work = d.parent / "work" / "diffusion"
        gen.sample_cache = work if work.is_dir() else None
        return gen


def _jsonable(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            v = v.tolist()
        elif hasattr(v, "tolist"):
            v = v.tolist()
        try:
            json.dumps(v)
        except TypeError:
            v = repr(v)
        out[k] = v
    return out
