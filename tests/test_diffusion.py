"""The shared diffusion stack: tokenizer, prompts, backbone, trainer (resume), sampling,
and the cbrs / sqrs samplers."""

import dataclasses
import shutil

import datasets
import numpy as np
import pytest
import torch
from conftest import make_rows
from scipy import stats

from baselines.cbrs import CBRS
from baselines.sd_finetune import SDFinetune
from baselines.sqrs import SQRS
from benchmark import GENERATORS, PROFILES, FitContext, Plan, PlanRow
from benchmark.diffusion import (
    Backbone,
    DiffusionTrainer,
    IndexSchedule,
    LossOutput,
    TrainConfig,
    TrainData,
    TrainingHooks,
    build_backbone,
    build_clip_tokenizer,
    build_prompt,
    build_train_data,
    sample_images,
)
from benchmark.schema import FEATURES, validate_dataset
from benchmark.tasks import TASKS

TASK = TASKS.get("phantom-cxr-finding")


# -- tokenizer ----------------------------------------------------------------------------


def test_clip_tokenizer_matches_open_clip():
    open_clip = pytest.importorskip("open_clip")
    tok = build_clip_tokenizer(77)
    assert len(tok) == 49408
    prompts = [
        "chest x-ray, female, age 80+, pleural effusion",
        "chest radiograph of a Black female patient with no finding!!",
        "Fitzpatrick type V, basal cell carcinoma; don't  Héllo",
        build_prompt(TASK, {"sex": "male", "age_group": "18-39"}, "lung_opacity",
                     style="fairdiffusion"),
    ]
    ours = tok(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    ref = open_clip.tokenize(prompts)
    for a, b in zip(ours, ref, strict=True):
        n = int((b != 0).sum())  # open_clip pads with 0, Stable Diffusion with <|endoftext|>
        assert a[:n].tolist() == b[:n].tolist()
        assert b[n - 1] == 49407 and (a[n:] == 49407).all()
    # a few ids by hand (CLIP's vocabulary): "chest" = 10563, "female" = 3970
    assert ref[0][:2].tolist() == [49406, 10563] and 3970 in ours[0].tolist()


# -- prompts ------------------------------------------------------------------------------


def test_prompt_styles():
    g = {"sex": "female", "age_group": "80+", "race": None}
    assert build_prompt(TASK, g, "pleural_effusion") == "female, 80+, pleural effusion"
    assert build_prompt(TASK, g, "pleural_effusion", style="task") == (
        "chest x-ray, female, age 80+, pleural effusion")
    assert build_prompt(TASK, g, "edema", style="fairdiffusion") == (
        "chest radiograph of a female 80+ patient with edema")
    with pytest.raises(ValueError, match="style"):
        build_prompt(TASK, g, "edema", style="nope")
    with pytest.raises(ValueError, match="age_group"):
        build_prompt(TASK, {"sex": "male"}, "edema")
    with pytest.raises(ValueError, match="not a class"):
        build_prompt(TASK, g, "dementia")


def test_every_cpu_prompt_fits_sixteen_tokens():
    import itertools

    tok = build_clip_tokenizer(16)
    from benchmark.schema import ATTRIBUTES

    for sex, age, cls in itertools.product(ATTRIBUTES["sex"], ATTRIBUTES["age_group"],
                                           TASK.classes):
        p = build_prompt(TASK, {"sex": sex, "age_group": age}, cls)
        assert len(tok(p).input_ids) <= 16, p


# -- backbone -----------------------------------------------------------------------------


def test_backbone_round_trip(tmp_path):
    b = build_backbone("smoke", image_channels=1, seed=3)
    b.save_pretrained(tmp_path / "bb")
    b2 = Backbone.from_pretrained(tmp_path / "bb")
    def public(cfg):
        return {k: v for k, v in cfg.items() if not k.startswith("_")}

    assert b2.spec == b.spec and public(b2.unet.config) == public(b.unet.config)
    x = torch.randn(2, *b.latent_shape)
    c = torch.randn(2, b.spec.max_tokens, b.unet.config.cross_attention_dim)
    t = torch.tensor([5, 500])
    with torch.no_grad():
        assert torch.equal(b.unet(x, t, c).sample, b2.unet(x, t, c).sample)
    # the pixel codec is exact
    img = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.equal(b.codec.decode(b.codec.encode(img)[0]), img)
    # seeded random init
    b3 = build_backbone("smoke", image_channels=1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(b.unet.parameters(), b3.unet.parameters(),
                                                 strict=True))


def test_paper_profile_without_weights_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="--pretrained"):
        build_backbone("paper", image_channels=1)
    with pytest.raises(FileNotFoundError, match="not a Stable Diffusion folder"):
        build_backbone("paper", image_channels=1, pretrained=str(tmp_path))


# -- trainer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_ds():
    return datasets.Dataset.from_dict(make_rows(30, size=32), features=FEATURES)


def _data(seed=0):
    b = build_backbone("smoke", image_channels=1, seed=seed)
    ds = datasets.Dataset.from_dict(make_rows(30, size=32), features=FEATURES)
    return b, build_train_data(b, ds, TASK, progress=False)


class CountingHooks(TrainingHooks):
    """A method with state: counts steps and sums per-sample losses (checks resume)."""

    def __init__(self):
        self.steps, self.total = 0, 0.0

    def on_step_end(self, step, outputs):
        assert all(isinstance(o, LossOutput) for _, o in outputs)
        self.steps += 1
        self.total += float(sum(o.per_sample.sum() for _, o in outputs))

    def state_dict(self):
        return {"steps": self.steps, "total": self.total}

    def load_state_dict(self, state):
        self.steps, self.total = state["steps"], state["total"]


CFG = TrainConfig(steps=6, batch_size=8, grad_accum=2, lr=1e-3, checkpoint_every=2,
                  ema_decay=0.9, log_every=1, seed=7)


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(tmp_path):
    b, data = _data()
    hooks = CountingHooks()
    full = DiffusionTrainer(b, data, CFG, tmp_path / "a", hooks=hooks, progress=False).train()
    assert full.finished and hooks.steps == 6

    b1, data1 = _data()
    t1 = DiffusionTrainer(b1, data1, CFG, tmp_path / "b", hooks=CountingHooks(), progress=False)
    part = t1.train(stop_after=5)
    assert not part.finished and [s for s, _ in t1.checkpoints()] == [4, 5]
    # a kill between checkpoints: step 5's checkpoint never got written, a half-written one
    # lies around
    shutil.rmtree(t1.checkpoint_dir / "checkpoint-0000005")
    (t1.checkpoint_dir / ".tmp-checkpoint-0000006").mkdir()

    b2, data2 = _data()
    hooks2 = CountingHooks()
    t2 = DiffusionTrainer(b2, data2, CFG, tmp_path / "b", hooks=hooks2, progress=False)
    resumed = t2.train()
    assert resumed.start_step == 4 and resumed.finished
    for p, q in zip(full.unet.parameters(), resumed.unet.parameters(), strict=True):
        assert torch.equal(p, q)  # EMA weights, bit for bit
    for p, q in zip(b.unet.parameters(), b2.unet.parameters(), strict=True):
        assert torch.equal(p, q)  # raw weights
    assert hooks2.state_dict() == hooks.state_dict()  # the method's state was restored
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in full.losses]
    assert (tmp_path / "b" / "loss_log.csv").read_text() == (
        tmp_path / "a" / "loss_log.csv").read_text()


def test_resume_with_another_config_is_an_error(tmp_path):
    b, data = _data()
    DiffusionTrainer(b, data, CFG, tmp_path, progress=False).train(stop_after=2)
    other = TrainConfig(**{**CFG.as_dict(), "lr": 5e-4})
    with pytest.raises(ValueError, match="different training config"):
        DiffusionTrainer(b, data, other, tmp_path, progress=False).train()


def test_training_loss_is_the_ddpm_mse_and_weights_apply():
    b, data = _data()

    class Weighted(TrainingHooks):
        def sample_weights(self, batch, per_sample_loss):
            return (batch.class_ids == 0).float() * 2

    trainer = DiffusionTrainer(b, data, CFG, "/nonexistent", progress=False)
    batch = trainer._batch(np.arange(8), 0, 0, 0, "cpu", b.unet)
    abar = b.noise_scheduler.alphas_cumprod[batch.timesteps].view(-1, 1, 1, 1)
    # x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps and v = sqrt(abar) eps - sqrt(1 - abar) x_0
    assert torch.allclose(batch.noisy_latents,
                          abar.sqrt() * batch.latents + (1 - abar).sqrt() * batch.noise,
                          atol=1e-6)
    assert b.noise_scheduler.config.prediction_type == "v_prediction"
    v = abar.sqrt() * batch.noise - (1 - abar).sqrt() * batch.latents
    assert torch.allclose(batch.target, v, atol=1e-6)
    with torch.no_grad():
        out = b.unet(batch.noisy_latents, batch.timesteps, batch.cond).sample
        per = ((out - v) ** 2).mean(dim=(1, 2, 3))
        plain = TrainingHooks().training_loss(batch)
        weighted = Weighted().training_loss(batch)
    assert torch.allclose(plain.loss, per.mean(), atol=1e-6)
    assert torch.allclose(weighted.loss, (per * (batch.class_ids == 0) * 2).mean(), atol=1e-6)
    # condition dropout replaces the prompt states by the empty prompt's
    assert torch.equal(batch.cond[~batch.dropped], data.class_embeddings[batch.class_ids[
        ~batch.dropped]])


def test_min_snr_weights_hand_computed_and_in_the_loss():
    """Min-SNR-gamma (Hang et al., 2023) from the scheduler's alphas_cumprod by hand:
    SNR = abar / (1 - abar); v-prediction weight min(SNR, g) / (SNR + 1), eps min(SNR, g) / SNR,
    x0 (sample) prediction min(SNR, g).
    """
    from diffusers import DDPMScheduler

    from benchmark.diffusion.trainer import min_snr_weights

    t = torch.tensor([0, 10, 300, 600, 999])
    for pred in ("v_prediction", "sample", "epsilon"):
        sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=pred)
        abar = sched.alphas_cumprod.double()[t].numpy()
        snr = abar / (1 - abar)
        want = np.minimum(snr, 5.0) / {"v_prediction": snr + 1, "sample": 1.0,
                                       "epsilon": snr}[pred]
        got = min_snr_weights(sched, t, 5.0).double().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5)
    # eps-prediction: the lowest-noise step (SNR >> 5) is capped to 5 / SNR
    assert got[0] == pytest.approx(5.0 / snr[0], rel=1e-5)
    b, data = _data()
    trainer = DiffusionTrainer(b, data, dataclasses.replace(CFG, snr_gamma=5.0), "/nonexistent",
                               progress=False)
    batch = trainer._batch(np.arange(8), 0, 0, 0, "cpu", b.unet)
    abar = b.noise_scheduler.alphas_cumprod.double()[batch.timesteps]
    snr = abar / (1 - abar)
    w = (torch.clamp(snr, max=5.0) / (snr + 1)).float()
    assert torch.allclose(batch.loss_weights, w, rtol=1e-5)
    with torch.no_grad():
        out = b.unet(batch.noisy_latents, batch.timesteps, batch.cond).sample
        per = ((out - batch.target) ** 2).mean(dim=(1, 2, 3))
        loss = TrainingHooks().training_loss(batch)
    assert torch.allclose(loss.loss, (w * per).mean(), atol=1e-6)
    assert torch.allclose(loss.per_sample, per, atol=1e-6)  # hooks see the unweighted MSE
    with pytest.raises(ValueError, match="snr_gamma"):
        TrainConfig(snr_gamma=-1.0)


def test_snr_floor_weights_hand_computed():
    """The floor of the x0-space weight: truncated SNR max(SNR, 1) (Salimans & Ho, 2022) and
    clamp(SNR, 1, 5), over each target's own x0-space weight (v: SNR + 1, x0: 1, eps: SNR)."""
    from diffusers import DDPMScheduler

    from benchmark.diffusion.trainer import min_snr_weights

    t = torch.tensor([0, 10, 300, 500, 700, 999])
    for pred in ("v_prediction", "sample", "epsilon"):
        sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=pred)
        abar = sched.alphas_cumprod.double()[t].numpy()
        snr = abar / (1 - abar)
        native = {"v_prediction": snr + 1, "sample": 1.0, "epsilon": snr}[pred]
        np.testing.assert_allclose(min_snr_weights(sched, t, 0.0, 1.0).double().numpy(),
                                   np.maximum(snr, 1.0) / native, rtol=1e-5)
        np.testing.assert_allclose(min_snr_weights(sched, t, 5.0, 1.0).double().numpy(),
                                   np.clip(snr, 1.0, 5.0) / native, rtol=1e-5)
    # x0 prediction: the high-noise end (SNR ~ 0 at t = 999) keeps weight 1, the low-noise
    # end (SNR ~ 1e4 at t = 0) is capped at 5
    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="sample")
    w = min_snr_weights(sched, torch.tensor([0, 999]), 5.0, 1.0)
    assert w.tolist() == pytest.approx([5.0, 1.0])
    with pytest.raises(ValueError, match="snr_floor"):
        TrainConfig(snr_floor=-1.0)
    with pytest.raises(ValueError, match="must not exceed"):
        TrainConfig(snr_gamma=2.0, snr_floor=3.0)


def test_snr_shift_schedule_hand_computed():
    """A shifted schedule multiplies every timestep's SNR by the shift (abar' = s abar /
    (1 + (s - 1) abar)), and the sampling schedulers read the same alphas."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    from benchmark.diffusion.backbone import shifted_betas, training_scheduler
    from benchmark.diffusion.sampling import sampling_scheduler

    spec = dataclasses.replace(PROFILES.get("smoke").diffusion.backbone, snr_shift=4.0)
    shifted = training_scheduler(spec)
    plain = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    a, b = plain.alphas_cumprod.double(), shifted.alphas_cumprod.double()
    t = torch.tensor([0, 100, 500, 900, 998])
    np.testing.assert_allclose((b / (1 - b))[t].numpy(), (4 * a / (1 - a))[t].numpy(),
                               rtol=2e-3)
    # by hand at one step: abar' = 4 abar / (1 + 3 abar)
    assert float(b[500]) == pytest.approx(float(4 * a[500] / (1 + 3 * a[500])), rel=1e-5)
    # betas back to alphas_cumprod: the cumulative product of 1 - beta'
    betas = shifted_betas(plain.alphas_cumprod, 4.0).double()
    np.testing.assert_allclose(torch.cumprod(1 - betas, 0)[t].numpy(), b[t].numpy(), rtol=1e-5)
    b_model = build_backbone(spec, image_channels=1)
    dpm = sampling_scheduler(b_model, "dpm-solver")
    assert isinstance(dpm, DPMSolverMultistepScheduler)
    assert torch.allclose(dpm.alphas_cumprod, shifted.alphas_cumprod)
    # no shift: the plain named schedule (no explicit betas in the saved config)
    unshifted = training_scheduler(PROFILES.get("smoke").diffusion.backbone)
    assert unshifted.config.trained_betas is None
    with pytest.raises(ValueError, match="snr_shift"):
        training_scheduler(dataclasses.replace(spec, snr_shift=0.0))


def test_regression_target_by_hand_for_each_prediction_type():
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps; targets eps, v = sqrt(abar) eps -
    sqrt(1 - abar) x0 (Salimans & Ho 2022) and x0, from alphas_cumprod by hand."""
    from diffusers import DDPMScheduler

    from benchmark.diffusion.trainer import regression_target

    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    t = torch.tensor([5, 400, 990])
    for pred in ("epsilon", "v_prediction", "sample"):
        sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=pred)
        a = sched.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - sched.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
        want = {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[pred]
        assert torch.allclose(regression_target(sched, x0, eps, t), want, atol=1e-5)
    sched = DDPMScheduler(prediction_type="epsilon")
    sched.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="unsupported prediction type 'flow'"):
        regression_target(sched, x0, eps, t)


# -- samplers (cbrs, sqrs) ----------------------------------------------------------------


def _fake_data(counts):
    class_ids = torch.tensor(np.repeat(np.arange(len(counts)), counts))
    n = len(class_ids)
    return TrainData(latents=torch.zeros(n, 1, 1, 1), latent_std=None, class_ids=class_ids,
                     prompts=[f"c{i}" for i in range(len(counts))],
                     class_embeddings=torch.zeros(len(counts), 1, 1),
                     uncond_embedding=torch.zeros(1, 1, 1), group_ids={}, group_names={},
                     finding_ids=torch.zeros(n, dtype=torch.long), findings=["x"])


@pytest.mark.parametrize("method,power", [(CBRS, 1.0), (SQRS, 0.5), (SDFinetune, 0.0)])
def test_sampler_class_frequencies(method, power):
    counts = np.array([400, 120, 30, 8])
    data = _fake_data(counts)
    sched = IndexSchedule(len(data), 64, seed=1, weights=method().sampler_weights(data))
    drawn = np.concatenate([sched(s) for s in range(300)])  # 19,200 draws
    observed = np.bincount(data.class_ids.numpy()[drawn], minlength=len(counts))
    expected_p = counts ** (1 - power) / (counts ** (1 - power)).sum()  # n_c * n_c^-power
    assert stats.chisquare(observed, expected_p * len(drawn)).pvalue > 1e-4
    assert np.allclose(observed / len(drawn), expected_p, atol=0.015)
    if power > 0:  # and the natural frequencies are clearly rejected
        natural = counts / counts.sum()
        assert stats.chisquare(observed, natural * len(drawn)).pvalue < 1e-12


def test_uniform_schedule_sees_every_example_once_per_epoch():
    sched = IndexSchedule(10, 4, seed=0)
    seq = np.concatenate([sched(s) for s in range(5)])  # 20 draws = 2 epochs
    assert sorted(seq[:10]) == list(range(10)) and sorted(seq[10:]) == list(range(10))
    assert np.array_equal(sched(3), IndexSchedule(10, 4, seed=0)(3))


# -- sampling and the generators ----------------------------------------------------------


def test_sampling_is_seeded_per_image_and_resumable(tmp_path):
    b = build_backbone("smoke", image_channels=1, seed=0)
    prompts = ["female, 80+, edema", "male, 18-39, no finding", "female, 80+, edema",
               "male, 40-59, cardiomegaly", "female, 60-79, edema"]
    kw = dict(seed=5, steps=3, guidance_scale=2.0)
    a = sample_images(b, prompts, batch_size=2, cache_dir=tmp_path, progress=False, **kw)
    c = sample_images(b, prompts, batch_size=5, progress=False, **kw)
    assert a.shape == (5, 1, 32, 32) and a.dtype == np.uint8
    assert np.array_equal(a, c)  # independent of batching
    assert not np.array_equal(a[0], a[2])  # same prompt, different seed -> different image
    shards = sorted(tmp_path.glob("samples-*/shard-*.npy"))
    assert len(shards) == 3
    np.save(shards[0], np.zeros_like(np.load(shards[0])))  # a finished shard is reused
    again = sample_images(b, prompts, batch_size=2, cache_dir=tmp_path, progress=False, **kw)
    assert (again[:2] == 0).all() and np.array_equal(again[2:], a[2:])
    for sampler in ("ddim", "dpm-solver"):
        sample_images(b, prompts[:1], sampler=sampler, progress=False, **kw)


@pytest.mark.parametrize("name", ["sd-finetune", "cbrs", "sqrs"])
def test_generators_fit_sample_save_load(name, train_ds, tmp_path):
    cls = GENERATORS.get(name)
    gen = cls({"steps": 2, "sample_steps": 2})
    gen.progress = False
    gen.fit(train_ds, FitContext(task=TASK, profile=PROFILES.get("smoke"), seed=0,
                                 work_dir=tmp_path / "w"))
    plan = Plan(TASK.name, TASK.sensitive_attributes, (
        PlanRow((("sex", "female"), ("age_group", "80+")), "edema", 2, "p"),
        PlanRow((("sex", "male"), ("age_group", "18-39")), "no_finding", 1, "p"),
    ), seed=3)
    out = gen.sample(plan)
    validate_dataset(out)
    assert len(out) == 3 and out["finding"] == ["edema", "edema", "no_finding"]
    assert out["sex"] == ["female", "female", "male"]
    assert out[0]["image"].size == (TASK.image_size, TASK.image_size)
    assert set(out["source"]) == {f"synthetic:{name}"}
    gen.save(tmp_path / "ckpt")
    again = cls.load(tmp_path / "ckpt")
    again.progress = False
    out2 = again.sample(plan)
    assert [np.asarray(i).tolist() for i in out["image"]] == [
        np.asarray(i).tolist() for i in out2["image"]]
    with pytest.raises(ValueError, match="unknown option"):
        cls({"stepz": 3})


def test_gpu_step_benchmark_script_runs_at_tiny_size():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "diffusion_step.py"
    spec = importlib.util.spec_from_file_location("diffusion_step", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--size", "tiny", "--steps", "2", "--warmup", "1", "--batch-size", "2"])
    assert set(out["results"]) == {"plain", "trainer", "trainer-no-ema"}
    assert all(r["steps"] == 2 and r["s_per_step"] > 0 for r in out["results"].values())


def test_cli_method_options():
    from benchmark.cli import build_parser, method_options

    args = build_parser().parse_args(["run", "--method", "sd-finetune", "--set", "steps=3",
                                      "--set", "prompt_style=task", "--set", "lr=1e-4",
                                      "--pretrained", "/models/sd"])
    opts = method_options(args)
    assert opts == {"steps": 3, "prompt_style": "task", "lr": 1e-4, "pretrained": "/models/sd"}
    assert SDFinetune(opts).config["steps"] == 3
    with pytest.raises(ValueError, match="KEY=VALUE"):
        method_options(build_parser().parse_args(["run", "--method", "x", "--set", "steps"]))


def test_sample_shards_of_another_model_are_never_reused(tmp_path):
    # a retrained model (other weights, same request) must sample anew, not read the shards
    # the older model left in the same cache folder (issue: stale samples after retraining)
    b = build_backbone("smoke", image_channels=1, seed=0)
    prompts = ["female, 80+, edema", "male, 18-39, no finding"]
    kw = dict(seed=5, steps=2, guidance_scale=2.0, batch_size=2, cache_dir=tmp_path,
              progress=False)
    first = sample_images(b, prompts, **kw)
    with torch.no_grad():
        for p in b.unet.parameters():
            p.mul_(1.5)
    second = sample_images(b, prompts, **kw)
    assert len(list(tmp_path.glob("samples-*"))) == 2
    assert not np.array_equal(first, second)
    fresh = sample_images(b, prompts, **{**kw, "cache_dir": None})
    assert np.array_equal(second, fresh)


@pytest.mark.slow
def test_recipe_benchmark_script_reports_checkpoints_and_plots(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "diffusion_recipe.py"
    spec = importlib.util.spec_from_file_location("diffusion_recipe", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    jsonl = tmp_path / "runs.jsonl"
    rows = mod.main(["--profile", "smoke", "--steps", "3", "--eval-every", "2", "--n-eval", "6",
                     "--fid", "never", "--compare-plain", "2", "--set", "batch_size=4",
                     "--tag", "t", "--jsonl", str(jsonl)])
    assert [r["step"] for r in rows] == [2, 3]
    for r in rows:
        assert 0 <= r["adherence"]["finding"] <= 1 and np.isfinite(r["fd_oracle"])
        assert r["train_images_per_s"] > 0 and r["sample_images_per_s"] > 0
        assert r["settings"]["train"]["snr_gamma"] == 5.0  # the smoke default
    assert rows[-1]["plain_s_per_step"] > 0 and rows[-1]["ours_s_per_step"] > 0
    assert [json.loads(line)["step"] for line in jsonl.read_text().splitlines()] == [2, 3]
    mod.main(["--plot", str(jsonl), "--png", str(tmp_path / "p.png")])
    assert (tmp_path / "p.png").stat().st_size > 0


def test_effective_precision_on_cpu_and_cuda(monkeypatch):
    """bf16 runs on a CPU only where it is native; fp16 never on a CPU; CUDA keeps what is
    asked; an unknown value is an error."""
    from benchmark.diffusion import trainer as tr

    monkeypatch.setattr(tr, "cpu_bf16_supported", lambda: True)
    assert tr.effective_precision("bf16", "cpu") == "bf16"
    assert tr.effective_precision("fp16", "cpu") == "no"
    assert tr.effective_precision("no", "cpu") == "no"
    monkeypatch.setattr(tr, "cpu_bf16_supported", lambda: False)
    assert tr.effective_precision("bf16", "cpu") == "no"
    assert tr.effective_precision("fp16", "cuda:0") == "fp16"
    assert tr.effective_precision("bf16", "cuda") == "bf16"
    with pytest.raises(ValueError, match="mixed_precision"):
        tr.effective_precision("fp8", "cpu")


def test_bf16_sampling_is_keyed_apart_and_close_to_float32(tmp_path, monkeypatch):
    """Sampling under bf16 autocast gives images close to float32's (same noise, same model),
    and its shards are stored under another key (never read back as float32 images)."""
    from benchmark.diffusion import trainer as tr

    if not tr.cpu_bf16_supported():
        pytest.skip("this CPU has no native bfloat16: bf16 sampling falls back to float32")
    b = build_backbone("smoke", image_channels=1)
    prompts = ["female, cardiomegaly", "male, edema"] * 2
    f32 = sample_images(b, prompts, seed=0, steps=3, batch_size=4, cache_dir=tmp_path,
                        progress=False)
    bf = sample_images(b, prompts, seed=0, steps=3, batch_size=4, cache_dir=tmp_path,
                       progress=False, mixed_precision="bf16")
    assert len(list(tmp_path.glob("samples-*"))) == 2
    diff = np.abs(f32.astype(int) - bf.astype(int))
    # of 255 grey levels (the images' sd is ~80): bfloat16 keeps ~3 significant digits;
    # measured 0.5 mean, 4 max. Not zero: the autocast did run
    assert 0 < diff.mean() < 4.0 and diff.max() <= 32
