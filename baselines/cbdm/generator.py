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
(:meth:`CBDM.profile_defaults`, resolved before the run config is written): the paper's full
batch at ``gpu`` and ``paper``, a quarter at ``smoke`` and ``cpu``, where the second UNet call
would otherwise make a step about 1.6 times as long as sd-finetune's and the cpu profile run
over its 10-minute budget.

The training log (``loss_log.csv``) gets the columns ``loss_ddpm``, ``cbdm_reg`` (the
regulariser) and ``cbdm_commit`` (the commitment term, before its factor gamma).
"""

from __future__ import annotations

from benchmark import OptionError, Profile
from benchmark.diffusion import DiffusionGenerator, LossOutput, StepBatch, TrainData
from benchmark.diffusion.losses import (
    DEFAULT_GAMMA,
    DEFAULT_TAU,
    OtherClassSampler,
    class_balancing_step,
)

OTHER_CLASS_CHOICES = ("auto", "frequency", "uniform")

#: Profiles (by name) whose ``regulariser_fraction`` default is a quarter of each micro-batch
#: (the CPU budgets); every other profile gets the paper's full batch.
QUARTER_BATCH_PROFILES = ("smoke", "cpu")


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
    option_types = {**DiffusionGenerator.option_types, "regulariser_fraction": float}

    def __init__(self, config=None):
        super().__init__(config)
        if self.config["other_class"] not in OTHER_CLASS_CHOICES:
            raise OptionError(f"cbdm: option other_class={self.config['other_class']!r}: "
                              f"expected one of {', '.join(OTHER_CLASS_CHOICES)}")
        for key in ("tau", "gamma"):
            value = self.config[key]
            if value < 0:
                raise OptionError(f"cbdm: option {key}={value!r}: expected a float >= 0")
        frac = self.config["regulariser_fraction"]
        if frac is not None and not 0 < frac <= 1:
            raise OptionError(f"cbdm: option regulariser_fraction={frac!r}: expected a float "
                              "in (0, 1] or None")
        self._other: OtherClassSampler | None = None

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict:
        """The diffusion defaults plus ``regulariser_fraction``: 0.25 at the CPU profiles
        (:data:`QUARTER_BATCH_PROFILES`), the paper's 1.0 elsewhere."""
        return {**super().profile_defaults(profile),
                "regulariser_fraction": 0.25 if profile.name in QUARTER_BATCH_PROFILES else 1.0}

    def regulariser_fraction(self) -> float:
        """f: the resolved share (set by :meth:`resolve` before training)."""
        frac = (self.resolved or self.config)["regulariser_fraction"]
        if frac is None:
            raise RuntimeError("cbdm: regulariser_fraction is unresolved; call resolve() or "
                               "fit() first")
        return float(frac)

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
