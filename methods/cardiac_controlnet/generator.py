"""``cardiac-controlnet`` (Skorupko et al.): a ControlNet on a frozen base model, conditioned
on patient-metadata text and on the stacked ED/ES segmentation masks
(:mod:`methods.cardiac_controlnet.conditioning`).

- **Base**: ``sd-finetune`` of the same task, profile and seed (:attr:`base`; the runner fits
  or reuses it); its (EMA) UNet, text encoder and codec are frozen. Called without a base
  checkpoint (e.g. a direct ``fit`` in a test) the profile's backbone is built fresh and
  frozen, with a warning.
- **Training**: only the stack's ControlNet (``attach_controlnet``, 3 conditioning channels)
  is trained, on every training row's metadata prompt and stacked mask image, with sampler
  weights ``1 / max(count(prompt), min_count)`` (the code's clipped 1/count).
- **Sampling**: the "synthetic copy": every requested image of a plan cell is tied to a real
  training sample of that cell (:func:`benchmark.attach_sources`), whose stacked masks are
  its control image and whose metadata prompt is its prompt; the synthetic rows carry
  ``source_id`` and ``control`` (written as ``control_path``).

Profile defaults of the method's own options: :data:`CARDIAC_PROFILE_DEFAULTS`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

from benchmark import GENERATORS, Profile, attach_sources
from benchmark.diffusion import (
    Backbone,
    ControlNetConfig,
    DiffusionGenerator,
    TrainData,
    attach_controlnet,
    build_backbone,
    build_train_data,
    control_to_tensor,
)
from benchmark.generators import FitContext, OptionError, Plan
from benchmark.schema import column

from .conditioning import cardiac_prompt, clipped_inverse_count_weights, stacked_masks

log = logging.getLogger(__name__)

#: The method's per-profile defaults (options left None). ``min_count``: the clipping of the
#: 1/count weights (the code's 9 x 10 = 90 rows at paper; the phantom's small cells at
#: smoke/cpu need a smaller floor for the weights to differ at all). At paper also the
#: paper's recipe: lr 1e-5, batch 1 x accumulation 2, DDIM 20 steps, guidance 4. At cpu the
#: ControlNet trains 1,200 steps (half the profile's 2,400, as ``sketch-controlnet``'s cpu
#: row, to fit the 10-minute budget beside a reused base).
CARDIAC_PROFILE_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "smoke": dict(min_count=2),
    "cpu": dict(min_count=5, steps=1200),
    "gpu": dict(min_count=20),
    "paper": dict(min_count=90, lr=1e-5, batch_size=1, grad_accum=2, sampler="ddim",
                  sample_steps=20, guidance_scale=4.0),
}


class CardiacControlNet(DiffusionGenerator):
    """Metadata-text + stacked-mask ControlNet on a frozen ``sd-finetune`` base."""

    name = "cardiac-controlnet"
    description = ("cardiac ControlNet (Skorupko et al.): metadata prompt + stacked ED/ES "
                   "masks, frozen base, clipped 1/count sampler, masks of real samples reused")
    base = "sd-finetune"
    required_columns = ("mask",)
    default_config = {
        **DiffusionGenerator.default_config,
        "min_count": None,  # 1/count weights are clipped at 1/min_count
        "conditioning_scale": 1.0,
    }
    option_types = {**DiffusionGenerator.option_types, "min_count": (int, float),
                    "conditioning_scale": (int, float)}

    def __init__(self, config=None):
        super().__init__(config)
        c = self.config
        if c["min_count"] is not None and not c["min_count"] >= 1:
            raise OptionError(f"{self.name}: option min_count={c['min_count']!r}: expected a "
                              "number >= 1")
        if not c["conditioning_scale"] >= 0:
            raise OptionError(f"{self.name}: option conditioning_scale="
                              f"{c['conditioning_scale']!r}: expected a number >= 0")
        self._source_prompts: dict[str, str] = {}

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        own = CARDIAC_PROFILE_DEFAULTS.get(profile.name, CARDIAC_PROFILE_DEFAULTS["cpu"])
        return {**super().profile_defaults(profile), **own}

    # -- fit ----------------------------------------------------------------------------------
    def make_backbone(self, ctx: FitContext) -> Backbone:
        if ctx.base_checkpoint is None:
            log.warning("%s: no base checkpoint (fit outside the runner): the ControlNet is "
                        "trained on a freshly built, frozen backbone", self.name)
            return build_backbone(self.resolved["backbone"], image_channels=ctx.task.channels,
                                  pretrained=self.resolved["pretrained"], seed=ctx.seed)
        base = GENERATORS.get(self.base).load(ctx.base_checkpoint)
        if not isinstance(base, DiffusionGenerator) or base.backbone is None:
            raise ValueError(f"{self.name}: the base checkpoint {ctx.base_checkpoint} holds no "
                             "diffusion backbone")
        self.resolved["backbone"] = base.resolved["backbone"]
        return base.backbone

    def train_data(self, train: datasets.Dataset, ctx: FitContext) -> TrainData:
        prompts = [cardiac_prompt(r, ctx.task.class_of(r["finding"]))
                   for r in train.select_columns(["sex", "age", "bmi_class", "finding"])]
        data = build_train_data(self.backbone, train, ctx.task, device=ctx.device,
                                progress=self.progress, prompts=prompts)
        res = self.backbone.spec.resolution
        ctrl = stacked_masks(train["mask"], column(train, "sample_id"),
                             column(train, "patient_id"))
        data.controls = torch.stack([control_to_tensor(c, channels=3, resolution=res)
                                     for c in ctrl])
        return data

    def prepare_backbone(self, data: TrainData, ctx: FitContext) -> None:
        attach_controlnet(self.backbone, ControlNetConfig(conditioning_channels=3,
                                                          conditioning_scale=float(
                                                              self.config["conditioning_scale"]),
                                                          seed=ctx.seed))

    def sampler_weights(self, data: TrainData) -> np.ndarray:
        prompts = [data.prompts[i] for i in data.class_ids.tolist()]
        return clipped_inverse_count_weights(prompts, float(self.resolved["min_count"]))

    # -- sample -------------------------------------------------------------------------------
    def condition_plan(self, plan: Plan, train: datasets.Dataset) -> Plan:
        """Every requested image takes a real training sample of its cell: its stacked masks
        (control) and its metadata prompt."""
        task = self.task
        ctrl = stacked_masks(train["mask"], column(train, "sample_id"),
                             column(train, "patient_id"))
        by_id = dict(zip(column(train, "sample_id"), range(len(train)), strict=True))
        meta = train.select_columns(["sample_id", "sex", "age", "bmi_class", "finding"])
        self._source_prompts = {r["sample_id"]: cardiac_prompt(r, task.class_of(r["finding"]))
                                for r in meta}
        return attach_sources(plan, train, task, seed=plan.seed,
                              control=lambda row: Image.fromarray(ctrl[by_id[row["sample_id"]]]))

    def _conditioning(self, plan: Plan):
        out = []
        for row in plan.rows:
            for j in range(row.count):
                cond = row.conditioning_of(j)
                if cond.source_id is None or cond.control is None:
                    raise ValueError(f"{self.name}: plan cell {row.attributes} / {row.finding} "
                                     "has images without a source sample; sample the plan "
                                     "returned by condition_plan(plan, train)")
                out.append(cond)
        return out

    def prompts_for(self, plan: Plan) -> list[str]:
        conds = self._conditioning(plan)
        missing = [c.source_id for c in conds if c.source_id not in self._source_prompts]
        if missing:
            raise ValueError(f"{self.name}: no metadata prompt for source sample "
                             f"{missing[0]!r}; call condition_plan(plan, train) first")
        return [self._source_prompts[c.source_id] for c in conds]

    def sampling_inputs(self, plan: Plan) -> dict[str, Any]:
        return {"controls": [c.control for c in self._conditioning(plan)],
                "conditioning_scale": float(self.config["conditioning_scale"])}
