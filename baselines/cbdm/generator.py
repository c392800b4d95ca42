"""``cbdm``: the shared diffusion stack trained with CBDM's class-balancing regulariser.

A class is a prompt (subgroup x finding cell, FairGen's definition), as for CBRS and SQRS.
Each micro-batch runs the UNet twice on the same noisy latents, once under the samples' own
prompts and once under prompts of classes y' drawn by :class:`OtherClassSampler` (one UNet
call on the stacked batch), and minimises :func:`cbdm_loss`. y' follows the training class
frequencies when the model is trained from scratch (profiles smoke, cpu, gpu) and is uniform
when a pretrained model is fine-tuned (``pretrained`` set, profile paper), as in the
authors' code; ``other_class`` overrides that choice. Samples whose prompt was dropped for
classifier-free guidance keep the DDPM loss and get no regulariser. y' is drawn from the
step's seeded generator, so a resumed run repeats the same draws.

The training log (``loss_log.csv``) gets the columns ``loss_ddpm``, ``cbdm_reg`` (the
regulariser) and ``cbdm_commit`` (the commitment term, before its factor gamma).
"""

from __future__ import annotations

import torch

from benchmark.diffusion import DiffusionGenerator, LossOutput, StepBatch, TrainData

from .regulariser import DEFAULT_GAMMA, DEFAULT_TAU, OtherClassSampler, cbdm_loss

OTHER_CLASS_CHOICES = ("auto", "frequency", "uniform")


class CBDM(DiffusionGenerator):
    name = "cbdm"
    description = ("class-balancing diffusion models: regulariser towards other classes' "
                   "predictions (Qin et al., CVPR 2023)")
    default_config = {
        **DiffusionGenerator.default_config,
        "tau": DEFAULT_TAU,
        "gamma": DEFAULT_GAMMA,
        # y' distribution: "auto" = uniform when fine-tuning pretrained weights, else the
        # training class frequencies
        "other_class": "auto",
    }

    def __init__(self, config=None):
        super().__init__(config)
        if self.config["other_class"] not in OTHER_CLASS_CHOICES:
            raise ValueError(f"cbdm: other_class must be one of {', '.join(OTHER_CLASS_CHOICES)}"
                             f", got {self.config['other_class']!r}")
        for key in ("tau", "gamma"):
            value = self.config[key]
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"cbdm: {key} must be a number >= 0, got {value!r}")
        self._other: OtherClassSampler | None = None

    def other_class_uniform(self) -> bool:
        """Whether y' is drawn uniformly (fine-tuning) rather than by class frequency."""
        choice = self.config["other_class"]
        if choice == "auto":
            return bool(self.resolved.get("pretrained"))
        return choice == "uniform"

    def on_train_start(self, data: TrainData, total_steps: int) -> None:
        self._other = OtherClassSampler(data.class_counts().tolist(),
                                        uniform=self.other_class_uniform())

    def training_loss(self, batch: StepBatch) -> LossOutput:
        if self._other is None:
            raise RuntimeError("cbdm: training_loss called before on_train_start")
        n = batch.timesteps.shape[0]
        other = self._other.sample(n, batch.generator).to(batch.class_ids.device)
        # one UNet call on [own conditions; other classes' conditions]
        both = batch.predict(torch.cat([batch.noisy_latents, batch.noisy_latents]),
                             torch.cat([batch.timesteps, batch.timesteps]),
                             torch.cat([batch.cond, batch.embed(other)]))
        pred, pred_other = both[:n], both[n:]
        out = cbdm_loss(pred, pred_other, batch.target, batch.timesteps,
                        num_train_timesteps=batch.num_train_timesteps,
                        tau=float(self.config["tau"]), gamma=float(self.config["gamma"]),
                        conditioned=~batch.dropped)
        logs = {k: v for k, v in out.as_floats().items() if k != "loss"}
        return LossOutput(out.total, batch.per_sample_mse(pred).detach(), logs)
