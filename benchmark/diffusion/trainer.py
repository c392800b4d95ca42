"""The diffusion trainer (accelerate) and its extension point for methods.

:class:`DiffusionTrainer` trains a backbone's UNet on a :class:`TrainData` with the DDPM
objective: mixed precision, gradient accumulation, EMA (diffusers ``EMAModel``), gradient
clipping, a warm-up + cosine (or constant) learning-rate schedule, condition dropout for
classifier-free guidance, checkpoints every ``checkpoint_every`` optimizer steps (accelerate
``save_state``: the UNet as safetensors, optimizer, LR schedule, EMA and the method's state)
and exact resume after a kill, a tqdm bar and a loss log (``loss_log.csv``). The same code
runs under ``accelerate launch`` on N processes: each process takes its slice of every global
batch and checkpoints are written by the main process.

Every random draw of step s (which examples, noise, timesteps, condition dropout, latent
sampling) comes from generators seeded with (seed, s, micro-batch, process), never from a
global RNG, so a run resumed from a checkpoint ends with the same weights as an
uninterrupted one.

Extension point (how a method changes training)
-----------------------------------------------
A method subclasses :class:`TrainingHooks` (every diffusion Generator already is one) and
overrides any of:

``sampler_weights(data: TrainData) -> np.ndarray | None``
    Per-example sampling weights of the training sampler (normalised by the trainer; drawn
    with replacement). ``None`` (default): uniform, epoch by epoch without replacement.
    CBRS returns 1/n_class(i), SQRS 1/sqrt(n_class(i)).
``step_sampler_weights(step: int) -> np.ndarray | None``
    Per-example sampler weights for optimizer step ``step`` only, for samplers that adapt
    during training (FairGen's gradient-aware weights). ``None`` (default): the fixed
    ``sampler_weights``. Drawn with replacement from a generator seeded by (seed, step); the
    weights must be a function of the method's checkpointed state, so a resume repeats them.
``training_loss(batch: StepBatch) -> LossOutput``
    The loss of one micro-batch. The default is the DDPM loss
    ``mean_i w_i * m_i * mean((f_theta(x_t, t, c) - target)^2)`` with
    ``w = sample_weights(...)`` and ``m = batch.loss_weights`` (SNR-clamped weights of the
    timesteps when ``TrainConfig.snr_gamma`` or ``snr_floor`` > 0, :func:`min_snr_weights`;
    else 1);
    the target is eps or v = sqrt(abar) eps - sqrt(1 - abar) x_0 as the scheduler's
    ``prediction_type`` says (the small profiles predict v, Stable Diffusion v1 eps).
    ``batch`` gives the noisy latents, timesteps, noise, target, conditioning (after dropout),
    class/group/finding ids, ``batch.predict(x_t, t, cond)`` (a UNet call, also for a second
    call under another condition), ``batch.embed(class_ids)`` (conditioning of other
    classes), ``batch.per_sample_mse(pred)`` and ``batch.generator`` (seeded per step, for the
    method's own random draws, e.g. CBDM's y').
``sample_weights(batch: StepBatch, per_sample_loss: Tensor) -> Tensor | None``
    Per-sample loss weights (B,) used by the default ``training_loss`` (FairDiffusion's
    ``1 + sum_attr sigma[attr, group] xi``); ``None`` (default) means all ones.
``on_train_start(data: TrainData, total_steps: int) -> None``
    Called once before the first step (also after a resume, before the state is restored).
``on_step_end(step: int, outputs: list[tuple[StepBatch, LossOutput]]) -> None``
    Called after every optimizer step with that step's micro-batches and their losses
    (this process's share; ``hooks.accelerator.gather`` collects them across processes),
    for state updates such as FairDiffusion's sigma.
``state_dict() -> dict`` / ``load_state_dict(state: dict) -> None``
    The method's trainable state (e.g. sigma, GP observations); saved in every checkpoint
    and restored on resume. Default: empty.

Optional parts of the backbone (set before training) change what is trained and how the
UNet is called, with the same loop, checkpoints and resume:

``backbone.controlnet`` (:func:`benchmark.diffusion.attach_controlnet`)
    Only the ControlNet is trained (optimizer, EMA, clipping, checkpoints); the UNet is
    frozen. Every UNet call adds the ControlNet's residuals of the batch's control images
    (``StepBatch.control``, from ``TrainData.controls``); the prompt is dropped with
    ``cond_dropout`` as usual, the control image never.
``backbone.context`` (a :class:`benchmark.diffusion.ContextHook`)
    Every UNet call maps the text states to the cross-attention context with it
    (``StepBatch.to_context``: the batch's group ids and dropout flags); its parameters are
    trained with the trained model, averaged by the same EMA, and saved in every checkpoint.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..markers import file_damage, module_digest
from .backbone import Backbone
from .controlnet import controlled_unet
from .data import TrainData

log = logging.getLogger(__name__)

_CKPT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class TrainConfig:
    """Every training option (saved with each checkpoint; a resume with another config is an
    error). Steps count optimizer steps; one step sees ``batch_size * grad_accum`` examples
    per process."""

    steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-4
    lr_schedule: str = "cosine"  # a diffusers.optimization.get_scheduler name
    warmup_steps: int = 0
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    ema_decay: float = 0.999  # 0 disables EMA
    # "no" | "fp16" | "bf16": fp16 on CUDA only; bf16 on CUDA and on CPUs with native
    # bfloat16 (effective_precision); otherwise float32
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    cond_dropout: float = 0.1  # classifier-free guidance: share of empty-prompt examples
    # min-SNR-gamma loss weighting (Hang et al., 2023); 0 = off (every timestep weighs 1)
    snr_gamma: float = 0.0
    # floor of the x0-space weight (1 = truncated SNR, Salimans & Ho 2022); 0 = off
    snr_floor: float = 0.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be no, fp16 or bf16, got "
                             f"{self.mixed_precision!r}")
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints",
                     "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train config: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.cond_dropout < 1:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not self.snr_gamma >= 0:
            raise ValueError(f"snr_gamma must be >= 0 (0 = off), got {self.snr_gamma}")
        if not self.snr_floor >= 0:
            raise ValueError(f"snr_floor must be >= 0 (0 = off), got {self.snr_floor}")
        if self.snr_gamma > 0 and self.snr_floor > self.snr_gamma:
            raise ValueError(f"snr_floor ({self.snr_floor}) must not exceed snr_gamma "
                             f"({self.snr_gamma})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LossOutput:
    """What a method's ``training_loss`` returns: the scalar to back-propagate, the detached
    per-sample losses (B,) for hooks and logs, and extra scalars to log."""

    loss: torch.Tensor
    per_sample: torch.Tensor | None = None
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class StepBatch:
    """One micro-batch of one optimizer step, on the training device."""

    step: int
    micro: int
    latents: torch.Tensor  # x_0 (B, C, h, w)
    noise: torch.Tensor  # eps
    timesteps: torch.Tensor  # (B,) long
    noisy_latents: torch.Tensor  # x_t
    target: torch.Tensor  # the UNet's target: eps or v (scheduler.config.prediction_type)
    cond: torch.Tensor  # (B, L, D) text states after condition dropout
    dropped: torch.Tensor  # (B,) bool: the condition was replaced by the empty prompt
    class_ids: torch.Tensor  # (B,) long index into data.prompts (before dropout)
    group_ids: dict[str, torch.Tensor]  # per sensitive attribute, (B,) long
    finding_ids: torch.Tensor  # (B,) long
    indices: torch.Tensor  # (B,) long: rows of the TrainData
    generator: torch.Generator  # CPU generator seeded by (seed, step, micro, process)
    data: TrainData
    num_train_timesteps: int
    _unet: Callable[..., Any] = field(repr=False, default=None)  # type: ignore[assignment]
    control: torch.Tensor | None = None  # (B, Cc, R, R) in [0, 1] when the data has controls
    _controlnet: Callable[..., Any] | None = field(repr=False, default=None)
    _context: Callable[..., Any] | None = field(repr=False, default=None)

    def to_context(self, cond: torch.Tensor) -> torch.Tensor:
        """The cross-attention context of text states ``cond``: the backbone's context hook
        applied with this batch's group ids and dropout flags (``cond`` itself without one)."""
        if self._context is None:
            return cond
        return self._context(cond, self.group_ids, self.dropped)
    # per-timestep loss weights (B,): min-SNR-gamma (:func:`min_snr_weights`), ones when off
    loss_weights: torch.Tensor | None = None

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor
                ) -> torch.Tensor:
        """The UNet's prediction (float32) for ``noisy`` at ``timesteps`` under ``cond``
        (through the context hook, plus the ControlNet's residuals of ``control``, when the
        backbone has them)."""
        return controlled_unet(self._unet, noisy, timesteps, self.to_context(cond),
                               controlnet=self._controlnet, control=self.control).float()

    def embed(self, class_ids: torch.Tensor) -> torch.Tensor:
        """Conditioning (B, L, D) of the given classes (prompts), on the batch's device."""
        emb = self.data.class_embeddings[class_ids.cpu()]
        return emb.to(self.cond.device, self.cond.dtype)

    def uncond(self, n: int) -> torch.Tensor:
        """The empty-prompt conditioning repeated ``n`` times."""
        return self.data.uncond_embedding.expand(n, -1, -1).to(self.cond.device, self.cond.dtype)

    def per_sample_mse(self, pred: torch.Tensor, target: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """mean over (C, h, w) of (pred - target)^2, one value per example (B,)."""
        t = self.target if target is None else target
        return (pred.float() - t.float()).pow(2).flatten(1).mean(1)

    def timestep_weighted(self, per_sample: torch.Tensor) -> torch.Tensor:
        """``per_sample`` (B,) times the batch's timestep loss weights (``loss_weights``; as
        is when there are none): what a method's own DDPM term averages, so that every
        method weighs timesteps as the stack's default loss does."""
        if self.loss_weights is None:
            return per_sample
        return self.loss_weights.to(per_sample) * per_sample


class TrainingHooks:
    """The extension point of :class:`DiffusionTrainer` (see the module docstring).

    ``accelerator`` is set by the trainer before ``on_train_start``."""

    accelerator: Any = None

    def sampler_weights(self, data: TrainData) -> np.ndarray | None:
        return None

    def step_sampler_weights(self, step: int) -> np.ndarray | None:
        return None

    def sample_weights(self, batch: StepBatch, per_sample_loss: torch.Tensor
                       ) -> torch.Tensor | None:
        return None

    def training_loss(self, batch: StepBatch) -> LossOutput:
        pred = batch.predict(batch.noisy_latents, batch.timesteps, batch.cond)
        per = batch.per_sample_mse(pred)
        w = self.sample_weights(batch, per.detach())
        weighted = batch.timestep_weighted(per)
        loss = weighted.mean() if w is None else (w.to(per) * weighted).mean()
        return LossOutput(loss, per.detach(), {})

    def on_train_start(self, data: TrainData, total_steps: int) -> None:
        pass

    def on_step_end(self, step: int, outputs: list[tuple[StepBatch, LossOutput]]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float, floor: float = 0.0
                    ) -> torch.Tensor:
    """SNR-clamped loss weights, one per timestep: min-SNR-gamma (Hang et al., 2023,
    "Efficient Diffusion Training via Min-SNR Weighting Strategy", eq. 7 and its v / eps forms)
    and, with ``floor``, the truncated-SNR weighting max(SNR, 1) of Salimans & Ho (2022,
    "Progressive Distillation", sec. 4).

    With SNR(t) = abar_t / (1 - abar_t) (``diffusers.training_utils.compute_snr``), the weight
    in x0 space is ``W(t) = clamp(SNR(t), floor, gamma)`` (``gamma`` 0: no cap; ``floor`` 0:
    no floor) and the MSE to the UNet's target is weighted by W over the target's own x0-space
    weight (an error of e in x0 is an error of e / sqrt(1 - abar) in v, e sqrt(SNR) in eps):

    * eps-prediction: ``w_t = W(t) / SNR(t)``
    * v-prediction:   ``w_t = W(t) / (SNR(t) + 1)``
    * x0 (``sample``) prediction: ``w_t = W(t)``

    The cap lowers the weight of low-noise timesteps, whose gradients conflict with the others
    and slow convergence; the floor keeps the high-noise timesteps (where the global layout,
    e.g. a finding, is decided) at weight >= ``floor`` in x0 space.
    """
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps).float()
    weight = torch.clamp(snr, max=gamma) if gamma > 0 else snr
    if floor > 0:
        weight = torch.clamp(weight, min=floor)
    if scheduler.config.prediction_type == "v_prediction":
        return weight / (snr + 1)
    if scheduler.config.prediction_type == "sample":
        return weight
    return torch.where(snr > 0, weight / snr.clamp(min=torch.finfo(snr.dtype).tiny), 1.0)


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 natively through oneDNN (AVX512-BF16 or AMX); without
    it bfloat16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_note() -> str:
    """One line on what mixed precision this machine offers."""
    if torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name(0)}"
    return "CPU with native bfloat16" if cpu_bf16_supported() else \
        "CPU without native bfloat16 (no AVX512-BF16 / AMX): float32 only"


def effective_precision(requested: str, device: str) -> str:
    """The mixed precision that runs: ``requested`` on CUDA; on a CPU, ``bf16`` only when the
    CPU has native bfloat16 (``fp16`` never: it has no fast CPU path), else ``no`` (float32).

    Weights, optimizer state and the loss stay float32 (autocast); results on a machine with
    and without native bfloat16 therefore differ a little, as between two GPU models."""
    if requested not in ("no", "fp16", "bf16"):
        raise ValueError(f"mixed_precision must be no, fp16 or bf16, got {requested!r}")
    if str(device).startswith("cuda"):
        return requested
    return "bf16" if requested == "bf16" and cpu_bf16_supported() else "no"


#: The UNet targets the trainer supports (``BackboneSpec.prediction_type``).
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def regression_target(scheduler: Any, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
                      ) -> torch.Tensor:
    """The UNet's regression target for x0 noised as x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t)
    eps: eps (``epsilon``), v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (``v_prediction``,
    Salimans & Ho 2022) or x0 itself (``sample``), by ``scheduler.config.prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ValueError(f"unsupported prediction type {kind!r}; expected one of "
                     f"{', '.join(PREDICTION_TYPES)}")


def _seed_of(*parts: int) -> int:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


class IndexSchedule:
    """Which training examples every optimizer step sees: a pure function of the step.

    Uniform (``weights`` None): consecutive slices of per-epoch permutations seeded by
    (seed, epoch), so every example is seen once per epoch. Weighted: ``per_step`` draws
    with replacement with probabilities ``weights / sum(weights)``, seeded by (seed, step).
    """

    def __init__(self, n: int, per_step: int, seed: int, weights: np.ndarray | None = None):
        if n < 1:
            raise ValueError("cannot train on an empty dataset")
        self.n, self.per_step, self.seed = n, per_step, seed
        self.p: np.ndarray | None = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(f"sampler weights must be {n} finite non-negative numbers with "
                                 "a positive sum")
            self.p = w / w.sum()

    def _epoch(self, e: int) -> np.ndarray:
        return np.random.default_rng(_seed_of(self.seed, 0xE, e)).permutation(self.n)

    def __call__(self, step: int, weights: np.ndarray | None = None) -> np.ndarray:
        """The example indices of ``step``; ``weights`` (this step's sampler weights) override
        the fixed ones."""
        p = self.p if weights is None else IndexSchedule(self.n, 1, 0, weights).p
        if p is not None:
            rng = np.random.default_rng(_seed_of(self.seed, 0x5, step))
            return rng.choice(self.n, size=self.per_step, replace=True, p=p)
        start = step * self.per_step
        out = []
        while len(out) < self.per_step:
            e, off = divmod(start + len(out), self.n)
            perm = self._epoch(e)
            out.extend(perm[off:off + self.per_step - len(out)].tolist())
        return np.asarray(out)


@dataclass
class TrainResult:
    """The trained UNet (EMA weights when EMA is on), the loss log and what this call ran.

    With a ControlNet, ``unet`` is the frozen UNet and ``controlnet`` the trained ControlNet
    (EMA weights); ``context`` is the trained context hook (EMA weights) when there is one."""

    unet: Any
    losses: list[dict[str, float]]
    finished: bool
    start_step: int
    end_step: int
    seconds: float
    controlnet: Any = None
    context: Any = None


class DiffusionTrainer:
    """Train ``backbone.unet`` on ``data``; checkpoints and logs go to ``work_dir``.

    Args:
        backbone: the model parts (only the UNet is trained).
        data: the encoded training set.
        config: training options.
        work_dir: ``checkpoints/checkpoint-<step>/`` and ``loss_log.csv`` live here.
        hooks: the method (default: plain DDPM fine-tuning).
        progress: show a tqdm bar.
    """

    def __init__(self, backbone: Backbone, data: TrainData, config: TrainConfig,
                 work_dir: str | Path, hooks: TrainingHooks | None = None,
                 progress: bool = True):
        self.backbone, self.data, self.cfg = backbone, data, config
        self.work_dir = Path(work_dir)
        self.hooks = hooks if hooks is not None else TrainingHooks()
        self.progress = progress

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    def _identity(self) -> str:
        sched = {k: v for k, v in self.backbone.noise_scheduler.config.items()
                 if not k.startswith("_")}
        ident = {"train": self.cfg.as_dict(), "data": self.data.fingerprint(),
                 "scheduler": sched, "unet": type(self.backbone.unet).__name__,
                 "hooks": type(self.hooks).__module__ + "." + type(self.hooks).__qualname__,
                 # a method's own options (e.g. CBDM's gamma) change training too
                 "method_options": getattr(self.hooks, "config", None)}
        # the optional parts (only when present, so plain runs keep their identity); a
        # ControlNet is tied to the frozen UNet it was trained on
        b = self.backbone
        if b.controlnet is not None:
            ident["controlnet"] = {k: v for k, v in b.controlnet.config.items()
                                   if not k.startswith("_")}
            if getattr(self, "_frozen_unet_fp", None) is None:  # frozen: hashed once
                self._frozen_unet_fp = module_digest(b.unet)
            ident["frozen_unet"] = self._frozen_unet_fp
        if b.context is not None:
            ident["context"] = {"class": type(b.context).__module__ + "." +
                                type(b.context).__qualname__,
                                **{k: v for k, v in b.context.config.items()
                                   if not k.startswith("_")}}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first (a half-written one has a temporary name)."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for p in self.checkpoint_dir.iterdir():
            m = _CKPT.match(p.name)
            if m and (p / "trainer_state.json").is_file():
                found.append((int(m.group(1)), p))
        return sorted(found)

    def _save(self, accelerator, step: int, losses: list[dict[str, float]]) -> None:
        final = self.checkpoint_dir / f"checkpoint-{step:07d}"
        tmp = self.checkpoint_dir / f".tmp-checkpoint-{step:07d}"
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        if accelerator.is_main_process:
            (tmp / "trainer_state.json").write_text(json.dumps(
                {"step": step, "identity": self._identity(), "config": self.cfg.as_dict()},
                indent=2))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self._write_losses(losses)
            for _, old in self.checkpoints()[:-self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def _write_losses(self, losses: list[dict[str, float]]) -> None:
        path = self.work_dir / "loss_log.csv"
        keys: list[str] = []
        for row in losses:
            keys.extend(k for k in row if k not in keys)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys or ["step"])
        w.writeheader()
        w.writerows(losses)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, path)

    def _read_losses(self, before: int) -> list[dict[str, float]]:
        path = self.work_dir / "loss_log.csv"
        if not path.is_file():
            return []
        rows, bad = [], 0
        with path.open(newline="") as f:
            for r in csv.DictReader(f):
                try:  # a row cut short (a killed write, a damaged file) is counted, not read
                    if None in r or any(v is None for v in r.values()):
                        raise ValueError("short row")
                    rows.append({k: (int(v) if k == "step" else float(v))
                                 for k, v in r.items() if v != ""})
                    if "step" not in rows[-1]:
                        raise ValueError("no step")
                except ValueError:
                    rows = rows[:-1] if rows and "step" not in rows[-1] else rows
                    bad += 1
        if bad:
            log.warning("%s: skipped %d damaged row(s) of the loss log", path, bad)
        return [r for r in rows if r["step"] < before]

    # -- one micro-batch --------------------------------------------------------------------
    def _batch(self, idx: np.ndarray, step: int, micro: int, process: int, device,
               unet, *, controlnet=None, context=None) -> StepBatch:
        d, sched = self.data, self.backbone.noise_scheduler
        g = torch.Generator().manual_seed(_seed_of(self.cfg.seed, step, micro, process))
        it = torch.as_tensor(idx, dtype=torch.long)
        x0 = d.latents[it]
        if d.latent_std is not None:
            x0 = x0 + d.latent_std[it] * torch.randn(x0.shape, generator=g)
        noise = torch.randn(x0.shape, generator=g)
        T = int(sched.config.num_train_timesteps)
        t = torch.randint(0, T, (len(idx),), generator=g)
        dropped = torch.rand(len(idx), generator=g) < self.cfg.cond_dropout
        cls = d.class_ids[it]
        cond = d.class_embeddings[cls].clone()
        cond[dropped] = d.uncond_embedding[0]
        noisy = sched.add_noise(x0, noise, t)
        target = regression_target(sched, x0, noise, t)
        to = lambda x: x.to(device)  # noqa: E731
        lw = (min_snr_weights(sched, t, self.cfg.snr_gamma, self.cfg.snr_floor)
              if self.cfg.snr_gamma > 0 or self.cfg.snr_floor > 0 else None)
        return StepBatch(
            step=step, micro=micro, latents=to(x0), noise=to(noise), timesteps=to(t),
            noisy_latents=to(noisy), target=to(target), cond=to(cond), dropped=to(dropped),
            class_ids=to(cls), group_ids={a: to(v[it]) for a, v in d.group_ids.items()},
            finding_ids=to(d.finding_ids[it]), indices=to(it), generator=g, data=d,
            num_train_timesteps=T, _unet=unet,
            control=None if d.controls is None else to(d.controls[it].float() / 255),
            _controlnet=controlnet, _context=context,
            loss_weights=None if lw is None else to(lw),
        )

    # -- the loop ---------------------------------------------------------------------------
    def train(self, *, stop_after: int | None = None) -> TrainResult:
        """Train to ``config.steps`` (resuming from the last checkpoint in ``work_dir``).

        ``stop_after``: return after this many optimizer steps in total (a checkpoint is
        written there), as a kill would, leaving the run resumable; for tests."""
        from accelerate import Accelerator
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        cfg, t0 = self.cfg, time.perf_counter()
        mp = effective_precision(cfg.mixed_precision, "cuda" if torch.cuda.is_available()
                                 else "cpu")
        if mp != cfg.mixed_precision:
            log.info("mixed precision %s is not available on this device (%s); training in "
                     "float32", cfg.mixed_precision, precision_note())
        accelerator = Accelerator(mixed_precision=mp)
        self.hooks.accelerator = accelerator
        # the trained model: the ControlNet when the backbone has one (UNet frozen), else the
        # UNet; a context hook is trained with it
        frozen_unet = None
        if self.backbone.controlnet is not None:
            if self.data.controls is None:
                raise ValueError("the backbone has a ControlNet but the training data has no "
                                 "control images (build_train_data(control_column=...))")
            frozen_unet = self.backbone.unet.requires_grad_(False).eval().to(accelerator.device)
            unet = self.backbone.controlnet
        else:
            unet = self.backbone.unet
        context = self.backbone.context
        unet_cls = type(unet)
        unet.train()
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            if frozen_unet is not None:  # the ControlNet's gradient flows through the UNet
                frozen_unet.enable_gradient_checkpointing()
        params = list(unet.parameters())
        if context is not None:
            context.train()
            params += list(context.parameters())
        # the fused AdamW kernel (CPU and CUDA): one pass over all parameters instead of a
        # dozen small ops per tensor (~10% of a cpu-profile step)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      fused=True)
        lr_sched = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=cfg.warmup_steps,
                                 num_training_steps=cfg.steps)
        if context is None:
            unet, optimizer = accelerator.prepare(unet, optimizer)
        else:
            unet, context, optimizer = accelerator.prepare(unet, context, optimizer)
        accelerator.register_for_checkpointing(lr_sched)

        def trained_params(model, ctx):
            return [*model.parameters(), *(ctx.parameters() if ctx is not None else [])]

        raw_ctx = accelerator.unwrap_model(context) if context is not None else None
        ema = None
        if cfg.ema_decay > 0:
            raw = accelerator.unwrap_model(unet)
            ema = EMAModel(trained_params(raw, raw_ctx), decay=cfg.ema_decay,
                           model_cls=unet_cls, model_config=raw.config, foreach=True)
            ema.to(accelerator.device)
            accelerator.register_for_checkpointing(ema)
        self.hooks.on_train_start(self.data, cfg.steps)
        accelerator.register_for_checkpointing(self.hooks)

        start, losses = 0, []
        # resume from the newest intact checkpoint: a damaged one (truncated weights, cut
        # trainer_state.json) is named, moved aside and the previous one is used
        for step, path in reversed(self.checkpoints()):
            damage = file_damage(path)
            if damage is not None:
                log.warning("damaged training checkpoint, falling back to the previous one: %s",
                            damage)
                if accelerator.is_main_process:
                    shutil.rmtree(path, ignore_errors=True)
                continue
            state = json.loads((path / "trainer_state.json").read_text())
            if state["identity"] != self._identity():
                raise ValueError(f"{path} was written by a different training config or data; "
                                 f"remove {self.checkpoint_dir} to start afresh")
            accelerator.load_state(str(path))
            start, losses = step, self._read_losses(step)
            log.info("resuming training from %s (step %d of %d)", path, step, cfg.steps)
            break
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)

        nproc, rank = accelerator.num_processes, accelerator.process_index
        per_micro = cfg.batch_size * nproc
        schedule = IndexSchedule(len(self.data), per_micro * cfg.grad_accum, cfg.seed,
                                 self.hooks.sampler_weights(self.data))
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        bar = tqdm(total=cfg.steps, initial=start, desc="training", leave=False,
                   disable=not (self.progress and accelerator.is_main_process))
        for step in range(start, end):
            idx_all = schedule(step, self.hooks.step_sampler_weights(step))
            outputs: list[tuple[StepBatch, LossOutput]] = []
            for micro in range(cfg.grad_accum):
                chunk = idx_all[micro * per_micro:(micro + 1) * per_micro]
                idx = chunk[rank * cfg.batch_size:(rank + 1) * cfg.batch_size]
                if frozen_unet is None:
                    batch = self._batch(idx, step, micro, rank, accelerator.device, unet,
                                        context=context)
                else:
                    batch = self._batch(idx, step, micro, rank, accelerator.device, frozen_unet,
                                        controlnet=unet, context=context)
                sync = micro == cfg.grad_accum - 1
                ctx = accelerator.no_sync(unet) if not sync and nproc > 1 else _nullcontext()
                with ctx, accelerator.autocast():
                    out = self.hooks.training_loss(batch)
                    if not torch.isfinite(out.loss):
                        raise FloatingPointError(f"training loss is {out.loss.item()} at step "
                                                 f"{step}; lower the learning rate")
                    accelerator.backward(out.loss / cfg.grad_accum)
                outputs.append((batch, out))
            if cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(trained_params(unet, context), cfg.max_grad_norm)
            optimizer.step()
            lr_sched.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.step(trained_params(accelerator.unwrap_model(unet), raw_ctx))
            self.hooks.on_step_end(step, outputs)
            loss = torch.stack([o.loss.detach().float() for _, o in outputs]).mean()
            loss = accelerator.gather(loss.reshape(1)).mean().item()
            row = {"step": step, "loss": loss, "lr": lr_sched.get_last_lr()[0]}
            for _, o in outputs:
                for k, v in o.logs.items():
                    row[k] = row.get(k, 0.0) + float(v) / len(outputs)
            losses.append(row)
            bar.update(1)
            if (step + 1) % cfg.log_every == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
                self._save(accelerator, step + 1, losses)
        bar.close()
        finished = end == cfg.steps
        final = accelerator.unwrap_model(unet)
        final_ctx = accelerator.unwrap_model(context) if context is not None else None
        if ema is not None:
            final = copy.deepcopy(final)
            final_ctx = copy.deepcopy(final_ctx)
            ema.copy_to(trained_params(final, final_ctx))
        final.eval()
        if final_ctx is not None:
            final_ctx.eval()
            self.backbone.context = accelerator.unwrap_model(context)
        seconds = round(time.perf_counter() - t0, 3)
        if frozen_unet is not None:
            self.backbone.controlnet = accelerator.unwrap_model(unet)
            accelerator.free_memory()
            return TrainResult(frozen_unet, losses, finished, start, end, seconds,
                               controlnet=final, context=final_ctx)
        self.backbone.unet = accelerator.unwrap_model(unet)
        accelerator.free_memory()
        return TrainResult(final, losses, finished, start, end, seconds, context=final_ctx)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
