"""CompDiff (``compdiff``): the shared diffusion stack with the Hierarchical Conditioner
Network's demographic token (:mod:`methods.compdiff.hcn`).

What changes against ``sd-finetune``:

- the composed attributes (option ``compose``; default: all the task's sensitive attributes)
  are removed from the prompt (``build_prompt(..., omit=compose)``) and enter through one
  HCN token appended after the text tokens;
- the HCN is the backbone's context hook: trained with the UNet (one optimizer, EMA),
  saved and resumed with it;
- the loss of a micro-batch is

      L = MSE + min(1, step / kl_warmup) * kl_weight * KL + cos_weight * (1 - cos)
          + aux_weight * mean_a CE_a

  each term logged separately (``mse``, ``kl``, ``cos``, ``aux_ce``, ``kl_scale``);
- token dropout for classifier-free guidance: each example's token is zeroed with
  probability ``token_dropout`` (independently of the stack's prompt dropout, as in the
  code); at sampling the unconditional branch has the empty prompt and a zero token.

Per-profile sizes of the HCN are in :data:`COMPDIFF_PROFILE_DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import datasets
import torch

from benchmark import Profile
from benchmark.diffusion import (
    DiffusionGenerator,
    LossOutput,
    StepBatch,
    TrainData,
    build_prompt,
    build_train_data,
)
from benchmark.generators import FitContext, OptionError, Plan
from benchmark.grouping import label_of

from .hcn import HierarchicalConditioner

#: CompDiff's own defaults per profile (options left None): a small HCN at smoke/cpu, the
#: paper's sizes (d_node 256, classifiers 512 wide, KL warm-up 5000 steps) at gpu/paper.
COMPDIFF_PROFILE_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "smoke": dict(d_node=16, aux_hidden=32, kl_warmup=10),
    "cpu": dict(d_node=32, aux_hidden=64, kl_warmup=200),
    "gpu": dict(d_node=128, aux_hidden=256, kl_warmup=2000),
    "paper": dict(d_node=256, aux_hidden=512, kl_warmup=5000),
}


class CompDiff(DiffusionGenerator):
    """CompDiff (Ibrahim et al.): a hierarchical demographic token for compositional
    (and unseen) intersections."""

    name = "compdiff"
    description = ("CompDiff: Hierarchical Conditioner Network token (KL, cosine, auxiliary "
                   "CE) for rare and unseen demographic intersections")
    context_class = HierarchicalConditioner
    default_config = {
        **DiffusionGenerator.default_config,
        "compose": None,  # attributes in the HCN (None: all the task's sensitive attributes)
        "d_node": None,
        "aux_hidden": None,
        "hcn_dropout": 0.1,
        "token_dropout": 0.5,
        "kl_weight": 0.005,
        "kl_warmup": None,  # steps of the linear KL warm-up
        "cos_weight": 0.1,
        "aux_weight": 1.0,
    }
    option_types = {**DiffusionGenerator.option_types, "compose": list, "d_node": int,
                    "aux_hidden": int, "kl_warmup": int}

    def __init__(self, config=None):
        super().__init__(config)
        c = self.config
        if c["prompt_style"] == "task":
            raise OptionError(f"{self.name}: prompt_style 'task' names every attribute; CompDiff "
                              "removes the composed ones (use fairgen, fairdiffusion or "
                              "fairgen-code)")
        for k in ("token_dropout", "hcn_dropout"):
            if not isinstance(c[k], int | float) or not 0 <= c[k] < 1:
                raise OptionError(f"{self.name}: option {k}={c[k]!r}: expected a float in [0, 1)")
        for k in ("kl_weight", "cos_weight", "aux_weight"):
            if not isinstance(c[k], int | float) or c[k] < 0:
                raise OptionError(f"{self.name}: option {k}={c[k]!r}: expected a number >= 0")
        for k in ("d_node", "aux_hidden", "kl_warmup"):
            if c[k] is not None and c[k] < 1:
                raise OptionError(f"{self.name}: option {k}={c[k]!r}: expected an integer >= 1")

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        """The stack's defaults plus :data:`COMPDIFF_PROFILE_DEFAULTS` (``cpu`` row for a
        profile without one)."""
        own = COMPDIFF_PROFILE_DEFAULTS.get(profile.name, COMPDIFF_PROFILE_DEFAULTS["cpu"])
        return {**super().profile_defaults(profile), **own}

    # -- the composed attributes ------------------------------------------------------------
    def composed(self, task) -> list[str]:
        compose = self.config["compose"]
        attrs = list(task.sensitive_attributes)
        if compose is None:
            return attrs
        bad = [a for a in compose if a not in attrs]
        if bad or not compose or len(set(compose)) != len(compose):
            raise OptionError(f"{self.name}: option compose={compose!r}: expected distinct "
                              f"sensitive attributes of task {task.name!r} ({', '.join(attrs)})")
        return [a for a in attrs if a in compose]

    def prompt_of(self, task, attributes: Mapping[str, object], finding: str) -> str:
        """The prompt with the composed attributes' words removed."""
        return build_prompt(task, attributes, finding, style=self.resolved["prompt_style"],
                            omit=self.composed(task))

    # -- fit ----------------------------------------------------------------------------------
    def train_data(self, train: datasets.Dataset, ctx: FitContext) -> TrainData:
        task = ctx.task
        attrs = task.sensitive_attributes
        prompts = [self.prompt_of(task, dict(zip(attrs, g, strict=True)), c)
                   for g, c in task.cell_keys(train)]
        return build_train_data(self.backbone, train, task, device=ctx.device,
                                progress=self.progress, prompts=prompts)

    def prepare_backbone(self, data: TrainData, ctx: FitContext) -> None:
        r, attrs = self.resolved, self.composed(ctx.task)
        self.backbone.context = HierarchicalConditioner(
            attributes=attrs, group_names=[list(data.group_names[a]) for a in attrs],
            dim=int(self.backbone.unet.config.cross_attention_dim), d_node=r["d_node"],
            aux_hidden=r["aux_hidden"], dropout=r["hcn_dropout"], seed=ctx.seed)

    def training_loss(self, batch: StepBatch) -> LossOutput:
        r = self.resolved
        hcn = self.backbone.context
        # the token is dropped independently of the prompt (CompDiff's demographic dropout);
        # the draw comes from the step's generator, so a resume repeats it
        drop = torch.rand(len(batch.indices), generator=batch.generator) < r["token_dropout"]
        hcn.use_generator(batch.generator)
        b = dataclasses.replace(batch, dropped=drop.to(batch.dropped.device))
        pred = b.predict(batch.noisy_latents, batch.timesteps, batch.cond)
        hcn.use_generator(None)
        per = batch.per_sample_mse(pred)
        mse = batch.timestep_weighted(per).mean()  # the stack's timestep weights, if any
        t, hcn.last_losses = hcn.last_losses, {}  # (no graph kept on the module: EMA copies it)
        kl_scale = min(1.0, batch.step / r["kl_warmup"])
        loss = (mse + kl_scale * r["kl_weight"] * t["kl"] + r["cos_weight"] * t["cos"]
                + r["aux_weight"] * t["aux_ce"])
        logs = {"mse": float(mse.detach()), "kl": float(t["kl"].detach()),
                "cos": float(t["cos"].detach()), "aux_ce": float(t["aux_ce"].detach()),
                "kl_scale": kl_scale, "token_dropped": float(drop.float().mean())}
        return LossOutput(loss, per.detach(), logs)

    # -- sample -------------------------------------------------------------------------------
    def prompts_for(self, plan: Plan) -> list[str]:
        assert self.task is not None
        out: list[str] = []
        for row in plan.rows:
            out += [self.prompt_of(self.task, row.attributes, row.finding)] * row.count
        return out

    def sampling_inputs(self, plan: Plan) -> dict[str, Any]:
        """Per image, the index of its cell's value of each composed attribute (a value never
        seen in training, e.g. an unknown one, is an error: the HCN has no embedding)."""
        hcn = self.backbone.context
        names = dict(zip(hcn.config.attributes, hcn.config.group_names, strict=True))
        ids: dict[str, list[int]] = {a: [] for a in names}
        for row in plan.rows:
            for a, vals in names.items():
                v = label_of(row.attributes[a])
                if v not in vals:
                    raise ValueError(f"{self.name}: plan cell {dict(row.attributes)} has {a} "
                                     f"{v!r}, which the model never saw (trained on "
                                     f"{', '.join(vals)})")
                ids[a] += [vals.index(v)] * row.count
        return {"group_ids": ids}
