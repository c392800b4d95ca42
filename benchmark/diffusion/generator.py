"""The diffusion Generator: the shared base of every text-conditioned diffusion method.

:class:`DiffusionGenerator` is a :class:`benchmark.Generator` *and* the trainer's
:class:`TrainingHooks`, so a method is a small subclass that sets ``name`` and
``description`` and overrides the hooks that make it distinctive (see
:mod:`benchmark.diffusion.trainer` for the hooks): ``sd-finetune`` overrides nothing, CBRS and
SQRS override ``sampler_weights``, CBDM ``training_loss``, FairDiffusion ``sample_weights``,
``on_step_end`` and ``state_dict``. A subclass that adds options extends ``default_config``:
``default_config = {**DiffusionGenerator.default_config, "gamma": 0.25}``.

Options left ``None`` take the run profile's default: its ``diffusion`` block
(:class:`~benchmark.settings.DiffusionSettings` in ``benchmark/profiles.py``), or, with the
``backbone`` option naming another profile, that profile's. :meth:`DiffusionGenerator.resolve`
fills every ``None`` and replaces ``backbone`` by the full backbone spec (a dict), so the run's
``config.json`` and its hash hold the sizes and settings that actually run; the resolved
options are also saved with the fitted model (``fit_info.json``).

``fit`` builds the profile's backbone (:func:`build_backbone`), encodes the training set
(:func:`build_train_data`), trains with :class:`DiffusionTrainer` in ``<work_dir>/diffusion``
(checkpoints there make an interrupted fit resumable) and keeps the EMA UNet. ``sample``
turns each plan cell into its prompt with :func:`build_prompt` (the same style as training)
and draws ``count`` images with classifier-free guidance.

Optional backbone parts: a method that attaches a ControlNet (``attach_controlnet``) or sets
a context hook (``backbone.context``) gets their trained (EMA) weights back on the backbone
after ``fit``, and ``save``/``load`` keep them beside the backbone; a context hook's class is
named by the subclass's ``context_class`` so ``load`` can rebuild it. Such a method passes
its control images / group ids to :func:`sample_images` in its own ``sample``.

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

from ..generators import FitContext, Generator, OptionError, Plan
from ..profiles import PROFILES, Profile
from ..schema import COLUMNS, FEATURES
from ..settings import DiffusionSettings
from ..tasks import Task
from .backbone import Backbone, backbone_spec, build_backbone
from .data import TrainData, build_train_data, tensor_to_image
from .prompts import PROMPT_STYLES, build_prompt
from .sampling import SAMPLERS, sample_images
from .trainer import DiffusionTrainer, TrainConfig, TrainingHooks

log = logging.getLogger(__name__)

_TRAIN_KEYS = ("steps", "batch_size", "grad_accum", "lr", "lr_schedule", "warmup_steps",
               "ema_decay", "mixed_precision", "gradient_checkpointing", "checkpoint_every",
               "snr_gamma", "snr_floor")
_SAMPLE_KEYS = ("sampler", "sample_steps", "guidance_scale", "sample_batch_size")
_POSITIVE = ("steps", "batch_size", "grad_accum", "checkpoint_every", "sample_steps",
             "sample_batch_size")
_MIXED_PRECISION = ("no", "fp16", "bf16")


class DiffusionGenerator(Generator, TrainingHooks):
    """Base of the diffusion methods; on its own it is plain fine-tuning (``sd-finetune``)."""

    name = ""
    description = ""
    # the ContextHook subclass a method sets as backbone.context (needed to load it back)
    context_class: type | None = None
    default_config: Mapping[str, Any] = {
        # a profile name (its backbone and defaults) or a backbone spec (a dict); None = the
        # run's profile. Resolved, it is the full spec.
        "backbone": None,
        # Stable Diffusion folder or a hub id in the local HF cache (profile paper; default
        # CompVis/stable-diffusion-v1-4 from the cache)
        "pretrained": None,
        "prompt_style": "fairgen",
        "cond_dropout": 0.1,
        **{k: None for k in _TRAIN_KEYS},
        **{k: None for k in _SAMPLE_KEYS},
    }
    option_types = {**DiffusionSettings.option_types(), "backbone": (str, dict)}

    def __init__(self, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        c, owner = self.config, self.name or type(self).__name__

        def bad(key: str, expected: str) -> OptionError:
            return OptionError(f"{owner}: option {key}={c[key]!r}: expected {expected}")

        if c["prompt_style"] not in PROMPT_STYLES:
            raise bad("prompt_style", f"one of {', '.join(PROMPT_STYLES)}")
        if c["sampler"] not in (None, *SAMPLERS):
            raise bad("sampler", f"one of {', '.join(SAMPLERS)}")
        if c["mixed_precision"] not in (None, *_MIXED_PRECISION):
            raise bad("mixed_precision", f"one of {', '.join(_MIXED_PRECISION)}")
        for key in _POSITIVE:
            if c[key] is not None and c[key] < 1:
                raise bad(key, "an integer >= 1")
        if c["warmup_steps"] is not None and c["warmup_steps"] < 0:
            raise bad("warmup_steps", "an integer >= 0")
        if c["lr"] is not None and not c["lr"] > 0:
            raise bad("lr", "a float > 0")
        if c["guidance_scale"] is not None and c["guidance_scale"] < 0:
            raise bad("guidance_scale", "a float >= 0")
        for key in ("cond_dropout", "ema_decay"):
            if c[key] is not None and not 0 <= c[key] < 1:
                raise bad(key, "a float in [0, 1)")
        if isinstance(c["backbone"], str) and c["backbone"] not in PROFILES:
            raise bad("backbone", f"a profile name ({', '.join(PROFILES.names())}) or a "
                                  "backbone spec")
        if isinstance(c["backbone"], dict):
            try:
                backbone_spec(c["backbone"])
            except (TypeError, ValueError) as err:
                raise OptionError(f"{owner}: option backbone: {err}") from None
        self.backbone: Backbone | None = None
        self.task: Task | None = None
        self.resolved: dict[str, Any] = {}
        self.device = "cpu"
        self.sample_cache: Path | None = None

    # -- options ----------------------------------------------------------------------------
    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        """The profile's :class:`~benchmark.settings.DiffusionSettings` as option defaults
        (``backbone``: its backbone spec as a dict). A method with per-profile defaults of its
        own extends this."""
        return {**profile.diffusion.options(), "backbone": profile.diffusion.backbone.as_dict()}

    def settings_profile(self, profile: Profile) -> Profile:
        """The profile whose diffusion settings fill this generator's ``None`` options: the one
        the ``backbone`` option names (as a name, or as the ``profile`` of a spec), else the
        run's ``profile``."""
        if not isinstance(profile, Profile):
            raise TypeError(f"{self.name}: resolve() takes a benchmark.Profile, got "
                            f"{profile!r}")
        backbone = self.config["backbone"]
        name = backbone.get("profile") if isinstance(backbone, dict) else backbone
        return PROFILES.get(name) if isinstance(name, str) and name in PROFILES else profile

    def resolve(self, profile: Profile) -> dict[str, Any]:
        """The options with every ``None`` replaced by the settings profile's default
        (:meth:`settings_profile`, :meth:`profile_defaults`) and ``backbone`` by the full
        backbone spec (a dict); ``pretrained`` stays ``None`` where the profile has none."""
        source = self.settings_profile(profile)
        defaults = type(self).profile_defaults(source)
        out = {k: (defaults[k] if v is None and k in defaults else v)
               for k, v in self.config.items()}
        out["backbone"] = backbone_spec(out["backbone"]).as_dict()
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
        self.backbone = self.make_backbone(ctx)
        data = self.train_data(train, ctx)
        self.prepare_backbone(data, ctx)
        trainer = DiffusionTrainer(self.backbone, data, self.train_config(ctx.seed),
                                   work / "diffusion", hooks=self, progress=self.progress)
        result = trainer.train()
        self.backbone.unet = result.unet
        if result.controlnet is not None:  # EMA weights of the optional trained parts
            self.backbone.controlnet = result.controlnet
        if result.context is not None:
            self.backbone.context = result.context
        self.sample_cache = work / "diffusion"
        log.info("%s: trained %d steps in %.1f s (final loss %.4f)", self.name,
                 result.end_step - result.start_step, result.seconds,
                 result.losses[-1]["loss"] if result.losses else float("nan"))

    # -- steps of fit and sample a method may override ----------------------------------------
    def make_backbone(self, ctx: FitContext) -> Backbone:
        """The backbone to train (default: the resolved spec, built fresh and seeded; a
        method on a base model loads the base's instead)."""
        return build_backbone(self.resolved["backbone"], image_channels=ctx.task.channels,
                              pretrained=self.resolved["pretrained"], seed=ctx.seed)

    def train_data(self, train: datasets.Dataset, ctx: FitContext) -> TrainData:
        """The encoded training set (default: prompts of the ``prompt_style``; a method with
        its own prompts or control images passes ``prompts=`` / ``control_column=``)."""
        assert self.backbone is not None
        return build_train_data(self.backbone, train, ctx.task,
                                prompt_style=self.resolved["prompt_style"], device=ctx.device,
                                progress=self.progress)

    def prepare_backbone(self, data: TrainData, ctx: FitContext) -> None:
        """Called after the training set is encoded, before training: where a method attaches
        a ControlNet or sets a context hook (which may need ``data.group_names``)."""

    def sampling_inputs(self, plan: Plan) -> dict[str, Any]:
        """Extra arguments of :func:`sample_images` for the plan's images, in plan order
        (``controls=``, ``group_ids=``); default none."""
        return {}

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
                               cache_dir=self.sample_cache, progress=self.progress,
                               mixed_precision=r["mixed_precision"],
                               **self.sampling_inputs(plan))
        return self.plan_dataset(plan, pixels)

    def plan_dataset(self, plan: Plan, pixels) -> datasets.Dataset:
        """The plan's images (uint8 pixels (N, C, R, R) in plan order) as rows of the standard
        schema, with each image's cell attributes, finding and conditioning."""
        assert self.task is not None
        rows: dict[str, list] = {c: [] for c in COLUMNS}
        i = 0
        for row in plan.rows:
            for j in range(row.count):
                cond = row.conditioning_of(j)
                img = tensor_to_image(torch.from_numpy(pixels[i]).float() / 127.5 - 1,
                                      channels=self.task.channels, size=self.task.image_size)
                rec = {c: None for c in COLUMNS}
                rec.update(row.attributes)
                sid = f"{self.name}-{i:06d}"
                rec.update(sample_id=sid, patient_id=sid, split="train", image=img,
                           finding=row.finding, labels=[row.finding],
                           source_id=cond.source_id, control=cond.control,
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
        gen.backbone = Backbone.from_pretrained(d / "backbone", context_cls=cls.context_class)
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
