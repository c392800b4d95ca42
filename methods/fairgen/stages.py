"""FairGen's two training stages as trainer hooks (:mod:`benchmark.diffusion.trainer`).

:class:`BaseStage` (SQRS or gradient-aware sampler + the CBSQ class-diversity loss) and
:class:`PreferenceStage` (the same, plus a preference loss on pairs against a frozen
reference UNet). Each stage's ``config`` holds exactly the options it depends on, so the
trainer's checkpoint identity (and resume) follows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from benchmark.diffusion import (
    GradientAwareWeights,
    LossOutput,
    OtherClassSampler,
    StepBatch,
    TrainData,
    TrainingHooks,
    as_coded_preference_loss,
    class_balanced_weights,
    class_balancing_step,
    diffusion_dpo_loss,
    draw_other_classes,
    output_gradient_norm,
)
from benchmark.diffusion.trainer import regression_target


class BaseStage(TrainingHooks):
    """Sampler p_i ~ n_class(i)^-power (x the gradient term when ``gradient_aware``) and the
    loss L_ddpm (+ CBSQ when ``cbsq``)."""

    def __init__(self, options: Mapping[str, Any]):
        keys = ("sampler_power", "gradient_aware", "ga_alpha", "ga_window", "cbsq", "cbsq_tau",
                "cbsq_gamma", "cbsq_other", "cbsq_fraction")
        self.config: dict[str, Any] = {k: options[k] for k in keys}
        self._data: TrainData | None = None
        self._other: OtherClassSampler | None = None
        self._ga: GradientAwareWeights | None = None

    def on_train_start(self, data: TrainData, total_steps: int) -> None:
        c = self.config
        self._data = data
        counts = data.class_counts()
        self._other = OtherClassSampler(counts.tolist(), uniform=True)
        if c["gradient_aware"]:
            self._ga = GradientAwareWeights(counts.tolist(), alpha=float(c["ga_alpha"]),
                                            window=int(c["ga_window"]))

    def sampler_weights(self, data: TrainData) -> np.ndarray:
        return class_balanced_weights(data.class_ids.numpy(), float(self.config["sampler_power"]))

    def step_sampler_weights(self, step: int) -> np.ndarray | None:
        if self._ga is None or self._data is None:
            return None
        # n_c^-1/2 x the gradient term, with this stage's frequency power (1/2: SQRS)
        counts = np.asarray(self._data.class_counts(), dtype=np.float64)
        w = self._ga.class_weights() * counts ** (0.5 - float(self.config["sampler_power"]))
        return w[self._data.class_ids.numpy()]

    def real_loss(self, batch: StepBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """The loss of the real (re-sampled) micro-batch and its per-sample MSE."""
        c = self.config
        if not c["cbsq"]:
            pred = batch.predict(batch.noisy_latents, batch.timesteps, batch.cond)
            per = batch.per_sample_mse(pred)
            return batch.timestep_weighted(per).mean(), per.detach(), {}
        assert self._other is not None
        other = draw_other_classes(batch.class_ids, self._other,
                                   distinct=c["cbsq_other"] == "distinct",
                                   generator=batch.generator)
        out, pred = class_balancing_step(batch, other, fraction=float(c["cbsq_fraction"]),
                                         tau=float(c["cbsq_tau"]), gamma=float(c["cbsq_gamma"]))
        logs = {k: v for k, v in out.as_floats().items() if k != "loss"}
        return out.total, batch.per_sample_mse(pred).detach(), logs

    def training_loss(self, batch: StepBatch) -> LossOutput:
        loss, per, logs = self.real_loss(batch)
        return LossOutput(loss, per, logs)

    def on_step_end(self, step: int, outputs: list[tuple[StepBatch, LossOutput]]) -> None:
        if self._ga is None:
            return
        ids, norms = [], []
        for batch, out in outputs:
            if out.per_sample is None:
                continue
            numel = int(np.prod(batch.target.shape[1:]))
            ids.append(batch.class_ids.cpu().numpy())
            norms.append(output_gradient_norm(out.per_sample, numel).cpu().numpy())
        if ids:
            self._ga.observe(np.concatenate(ids), np.concatenate(norms))

    def state_dict(self) -> dict[str, Any]:
        return {"ga": self._ga.state_dict()} if self._ga is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._ga is not None and "ga" in state:
            self._ga.load_state_dict(state["ga"])


class PreferenceStage(BaseStage):
    """:class:`BaseStage`'s loss plus ``dpo_weight`` x a preference loss on a mini-batch of
    pairs (drawn with the step's generator):

    ``diffusion-dpo``: winner and loser share t and noise; frozen reference UNet
    (:func:`benchmark.diffusion.diffusion_dpo_loss`). ``as-coded``: shared t, independent
    noise, no reference (:func:`benchmark.diffusion.as_coded_preference_loss`).

    Args:
        options: the method's resolved options.
        pairs: ``latents_w``, ``latents_l`` (P, C, h, w) (+ ``std_w``/``std_l`` or None),
            ``cond`` (P, L, D) text states of the pairs' prompts, ``digest`` (of the file).
        reference: the frozen reference UNet (diffusion-dpo only).
        scheduler: the backbone's training noise scheduler.
    """

    def __init__(self, options: Mapping[str, Any], pairs: Mapping[str, Any], reference: Any,
                 scheduler: Any, reference_digest: str | None):
        super().__init__(options)
        for k in ("dpo", "dpo_beta", "dpo_weight", "dpo_batch_size"):
            self.config[k] = options[k]
        self.config["pairs"] = pairs["digest"]
        self.config["reference"] = reference_digest
        self.pairs, self.reference, self.scheduler = pairs, reference, scheduler

    def on_train_start(self, data: TrainData, total_steps: int) -> None:
        super().on_train_start(data, total_steps)
        if self.reference is not None:
            dev = self.accelerator.device if self.accelerator is not None else "cpu"
            self.reference = self.reference.requires_grad_(False).eval().to(dev)

    def preference_loss(self, batch: StepBatch):
        p, g, c = self.pairs, batch.generator, self.config
        n = int(p["latents_w"].shape[0])
        idx = torch.randint(0, n, (int(c["dpo_batch_size"]),), generator=g)
        x0 = []
        for side in ("w", "l"):
            x = p[f"latents_{side}"][idx]
            if p.get(f"std_{side}") is not None:
                x = x + p[f"std_{side}"][idx] * torch.randn(x.shape, generator=g)
            x0.append(x)
        x0 = torch.cat(x0)
        k = idx.shape[0]
        t = torch.randint(0, batch.num_train_timesteps, (k,), generator=g)
        noise = torch.randn(x0[:k].shape, generator=g)
        if c["dpo"] == "diffusion-dpo":
            noise = torch.cat([noise, noise])  # one noise per pair
        else:  # as coded: independent noise for the loser
            noise = torch.cat([noise, torch.randn(noise.shape, generator=g)])
        t2 = torch.cat([t, t])
        dev = batch.cond.device
        x0, noise, t2 = x0.to(dev), noise.to(dev), t2.to(dev)
        noisy = self.scheduler.add_noise(x0, noise, t2)
        target = regression_target(self.scheduler, x0, noise, t2)
        cond = p["cond"][idx].to(dev, batch.cond.dtype)
        cond = torch.cat([cond, cond])
        pred = batch.predict(noisy, t2, cond)
        mse = batch.per_sample_mse(pred, target)
        if c["dpo"] == "diffusion-dpo":
            with torch.no_grad():
                ref = self.reference(noisy, t2, encoder_hidden_states=cond).sample.float()
            ref_mse = batch.per_sample_mse(ref, target)
            return diffusion_dpo_loss(mse[:k], mse[k:], ref_mse[:k], ref_mse[k:],
                                      beta=float(c["dpo_beta"]))
        return as_coded_preference_loss(mse[:k], mse[k:], beta=float(c["dpo_beta"]))

    def training_loss(self, batch: StepBatch) -> LossOutput:
        loss, per, logs = self.real_loss(batch)
        pref = self.preference_loss(batch)
        logs.update(pref.as_floats())
        return LossOutput(loss + float(self.config["dpo_weight"]) * pref.total, per, logs)


@torch.no_grad()
def evaluate_preferences(policy: Any, reference: Any, pairs: Mapping[str, Any], scheduler: Any,
                         *, beta: float | None, seed: int, draws: int = 4,
                         batch_size: int = 64) -> dict[str, Any]:
    """How the preference stage left the policy against the reference (the base UNet), on
    *every* pair (the loss log has only each step's mini-batch).

    Each pair gets ``draws`` (t, noise) draws from a generator seeded with ``seed``, shared
    by winner and loser and by both models (as Diffusion-DPO's loss). With per-sample MSEs m
    (policy) and r (reference) and the draw-mean margin

        margin = (m_l - r_l) - (m_w - r_w)

    (> 0: the policy favours the winner more than the reference does; Diffusion-DPO's
    implicit reward difference, Wallace et al. 2023, Eq. 14, up to the factor beta/2):

    - ``implicit_acc``: the share of pairs with margin > 0 (0.5 for an unchanged policy);
    - ``margin``: its mean over pairs; ``winner_mse_change`` / ``loser_mse_change``: mean
      m - r of each side (both far above 0: the policy ran away from the reference);
    - ``dpo_loss`` (``beta`` given): mean over pairs and draws of
      -log sigmoid(beta/2 * margin_draw), log 2 for an unchanged policy.
    """
    n = int(pairs["latents_w"].shape[0])
    g = torch.Generator().manual_seed(int(seed))
    T = int(scheduler.config.num_train_timesteps)
    idx = torch.arange(n).repeat_interleave(int(draws))
    t = torch.randint(0, T, (idx.shape[0],), generator=g)
    x0 = {}
    for side in ("w", "l"):
        x = pairs[f"latents_{side}"][idx].float()
        if pairs.get(f"std_{side}") is not None:
            x = x + pairs[f"std_{side}"][idx] * torch.randn(x.shape, generator=g)
        x0[side] = x
    noise = torch.randn(x0["w"].shape, generator=g)
    cond = pairs["cond"][idx].float()
    dev = next(policy.parameters()).device
    mse: dict[tuple[str, str], list[torch.Tensor]] = {}
    for side in ("w", "l"):
        target_all = regression_target(scheduler, x0[side], noise, t)
        noisy_all = scheduler.add_noise(x0[side], noise, t)
        for start in range(0, idx.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            noisy, tt, c = noisy_all[sl].to(dev), t[sl].to(dev), cond[sl].to(dev)
            target = target_all[sl].to(dev)
            for name, model in (("policy", policy), ("reference", reference)):
                pred = model(noisy, tt, encoder_hidden_states=c).sample.float()
                m = (pred - target.float()).pow(2).flatten(1).mean(1).cpu()
                mse.setdefault((name, side), []).append(m)
    m = {k: torch.cat(v).reshape(n, int(draws)) for k, v in mse.items()}
    dw = m[("policy", "w")] - m[("reference", "w")]
    dl = m[("policy", "l")] - m[("reference", "l")]
    margin = (dl - dw).mean(1)
    out: dict[str, Any] = {
        "n_pairs": n, "draws": int(draws),
        "implicit_acc": float((margin > 0).float().mean()),
        "margin": float(margin.mean()),
        "winner_mse_change": float(dw.mean()), "loser_mse_change": float(dl.mean()),
    }
    if beta is not None:
        out["dpo_loss"] = float(diffusion_dpo_loss(
            m[("policy", "w")].flatten(), m[("policy", "l")].flatten(),
            m[("reference", "w")].flatten(), m[("reference", "l")].flatten(),
            beta=float(beta)).total)
    return out
