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

Budget option ``regulariser_fraction`` (f): the other-class prediction is made for a uniformly
random f-share of each micro-batch (at least one sample) and the regulariser and commitment
average over those samples, an unbiased estimate of the full-batch terms at a fraction of the
second call's cost; the DDPM loss still uses the whole batch, so every method gets the same
number of denoising updates. Left None it takes the run profile's value
(:data:`REGULARISER_FRACTION_BY_PROFILE`): the paper's full batch at ``gpu`` and ``paper``, a
quarter at ``smoke`` and ``cpu``, where the second UNet call would otherwise make a step about
1.6 times as long as sd-finetune's and the cpu profile run over its 10-minute budget.

The training log (``loss_log.csv``) gets the columns ``loss_ddpm``, ``cbdm_reg`` (the
regulariser) and ``cbdm_commit`` (the commitment term, before its factor gamma).
"""

from __future__ import annotations

from benchmark.diffusion import DiffusionGenerator, LossOutput, StepBatch, TrainData
from benchmark.diffusion.losses import (
    DEFAULT_GAMMA,
    DEFAULT_TAU,
    OtherClassSampler,
    class_balancing_step,
)

OTHER_CLASS_CHOICES = ("auto", "frequency", "uniform")

#: Share of each micro-batch given the regulariser when ``regulariser_fraction`` is None.
REGULARISER_FRACTION_BY_PROFILE = {"smoke": 0.25, "cpu": 0.25, "gpu": 1.0, "paper": 1.0}


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
        # share of each micro-batch that gets the regulariser (None: the profile's value)
        "regulariser_fraction": None,
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
        frac = self.config["regulariser_fraction"]
        if frac is not None and (not isinstance(frac, int | float) or not 0 < frac <= 1):
            raise ValueError(f"cbdm: regulariser_fraction must be in (0, 1] or None, got "
                             f"{frac!r}")
        self._other: OtherClassSampler | None = None

    def regulariser_fraction(self) -> float:
        """f: the configured share, else the run profile's (1.0 when unknown)."""
        if self.config["regulariser_fraction"] is not None:
            return float(self.config["regulariser_fraction"])
        profile = self.resolved.get("backbone") if self.resolved else None
        return REGULARISER_FRACTION_BY_PROFILE.get(profile or "", 1.0)

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
        other = self._other.sample(n, batch.generator)
        out, pred = class_balancing_step(batch, other, fraction=self.regulariser_fraction(),
                                         tau=float(self.config["tau"]),
                                         gamma=float(self.config["gamma"]))
        logs = {k: v for k, v in out.as_floats().items() if k != "loss"}
        return LossOutput(out.total, batch.per_sample_mse(pred).detach(), logs)
