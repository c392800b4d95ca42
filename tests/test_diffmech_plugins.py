"""The cbdm and fairdiffusion plugins on the shared diffusion stack (smoke-size models):
their mechanisms reach the training log, FairDiffusion's sigma survives a kill."""

from __future__ import annotations

import csv
import shutil
from types import SimpleNamespace

import datasets
import pytest
import torch
from conftest import make_rows

from baselines.cbdm.generator import CBDM
from baselines.fairdiffusion import MISSING
from baselines.fairdiffusion.generator import FairDiffusion, layout_from_data
from benchmark import GENERATORS, PROFILES
from benchmark.diffusion import DiffusionTrainer, TrainConfig, build_backbone, build_train_data
from benchmark.schema import FEATURES
from benchmark.tasks import TASKS

TASK = TASKS.get("phantom-cxr-finding")
CFG = TrainConfig(steps=4, batch_size=8, grad_accum=1, lr=1e-3, checkpoint_every=2,
                  ema_decay=0.9, log_every=1, seed=3)


def _data(seed=0):
    b = build_backbone("smoke", image_channels=1, seed=seed)
    ds = datasets.Dataset.from_dict(make_rows(30, size=32), features=FEATURES)
    return b, build_train_data(b, ds, TASK, progress=False)


def _log(path):
    with open(path) as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def test_both_are_registered():
    assert GENERATORS.get("cbdm") is CBDM
    assert GENERATORS.get("fairdiffusion") is FairDiffusion


def test_cbdm_options():
    with pytest.raises(ValueError, match="other_class"):
        CBDM({"other_class": "sometimes"})
    with pytest.raises(ValueError, match="gamma"):
        CBDM({"gamma": -1})
    with pytest.raises(ValueError, match="unknown option"):
        CBDM({"lambda": 1})
    gen = CBDM()
    gen.resolved = {"pretrained": None}
    assert not gen.other_class_uniform()  # from scratch: training class frequencies
    gen.resolved = {"pretrained": "/models/sd-v1-4"}
    assert gen.other_class_uniform()  # fine-tuning: uniform, as the authors
    assert CBDM({"other_class": "frequency"}).other_class_uniform() is False
    with pytest.raises(ValueError, match="regulariser_fraction"):
        CBDM({"regulariser_fraction": 0})
    for profile, frac in (("cpu", 0.25), ("smoke", 0.25), ("gpu", 1.0), ("paper", 1.0)):
        gen = CBDM()
        gen.resolved = gen.resolve(PROFILES.get(profile))
        assert gen.regulariser_fraction() == frac
    assert CBDM({"regulariser_fraction": 0.5}).regulariser_fraction() == 0.5


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [1.0, 0.25])
def test_cbdm_training_logs_its_regulariser(tmp_path, fraction):
    b, data = _data()
    gen = CBDM({"regulariser_fraction": fraction})
    calls = []
    unet = b.unet
    b.unet.register_forward_pre_hook(lambda m, args, kwargs: calls.append(args[0].shape[0]),
                                     with_kwargs=True)
    DiffusionTrainer(b, data, TrainConfig(**{**CFG.as_dict(), "steps": 2}), tmp_path,
                     hooks=gen, progress=False).train()
    assert gen._other is not None
    assert gen._other.probabilities.tolist() == pytest.approx(
        (data.class_counts() / data.class_counts().sum()).tolist())
    rows = _log(tmp_path / "loss_log.csv")
    assert len(rows) == 2
    for r in rows:
        reg, commit, ddpm = r["cbdm_reg"], r["cbdm_commit"], r["loss_ddpm"]
        assert reg > 0 and commit > 0
        # the trainer's loss is the CBDM total with gamma = 1/4
        assert r["loss"] == pytest.approx(ddpm + reg + 0.25 * commit, rel=1e-5)
    # one UNet call a micro-batch on the batch plus the regularised share of it
    assert calls == [CFG.batch_size + max(1, round(fraction * CFG.batch_size))] * 2
    assert unet is b.unet


def test_fairdiffusion_layout_treats_unknown_as_missing():
    data = SimpleNamespace(group_names={"sex": ["female", "male", "unknown"],
                                        "race": ["unknown"]})
    layout, maps = layout_from_data(data)
    assert layout.attributes == (("sex", ("female", "male")),)
    assert maps["sex"].tolist() == [0, 1, MISSING]
    with pytest.raises(ValueError, match="no sensitive attribute"):
        layout_from_data(SimpleNamespace(group_names={"race": ["unknown"]}))


def test_fairdiffusion_rejects_bad_options():
    with pytest.raises(ValueError, match="exploitation"):
        FairDiffusion({"exploitation": 2.0})


@pytest.mark.slow
def test_fairdiffusion_sigma_trajectory_is_logged_and_survives_a_kill(tmp_path):
    opts = {"window": 2}
    b, data = _data()
    full_gen = FairDiffusion(opts)
    full = DiffusionTrainer(b, data, CFG, tmp_path / "a", hooks=full_gen, progress=False).train()
    state = full_gen.state_dict()
    assert state["step"] == 4
    assert [r["updated"] for r in state["trajectory"]] == [False, True] * 2
    rows = _log(tmp_path / "a" / "loss_log.csv")
    labels = [c for c in rows[0] if c.startswith("sigma[")]
    assert labels == [f"sigma[{lab}]" for lab in full_gen.controller.layout.labels]
    assert {c.split("=")[0] for c in labels} == {"sigma[age_group", "sigma[sex"}
    assert "sigma[sex=female]" in labels and "sigma[sex=male]" in labels
    assert [r["fair_sigma_updated"] for r in rows] == [0.0, 1.0] * 2
    assert all(r["fair_gap"] >= 0 for r in rows)
    # the logged sigma is the controller's trajectory
    assert [rows[-1][c] for c in labels] == pytest.approx(state["sigma"])

    # kill after step 3 (its checkpoint lost), resume from step 2
    b1, data1 = _data()
    t1 = DiffusionTrainer(b1, data1, CFG, tmp_path / "b", hooks=FairDiffusion(opts),
                          progress=False)
    t1.train(stop_after=3)
    shutil.rmtree(t1.checkpoint_dir / "checkpoint-0000003")
    b2, data2 = _data()
    resumed_gen = FairDiffusion(opts)
    resumed = DiffusionTrainer(b2, data2, CFG, tmp_path / "b", hooks=resumed_gen,
                               progress=False).train()
    assert resumed.start_step == 2
    assert resumed_gen.state_dict() == state  # sigma, GP data, generator, trajectory
    for p, q in zip(full.unet.parameters(), resumed.unet.parameters(), strict=True):
        assert torch.equal(p, q)
    assert _log(tmp_path / "b" / "loss_log.csv") == _log(tmp_path / "a" / "loss_log.csv")


def test_fairdiffusion_window_follows_the_profile():
    gen = FairDiffusion()
    assert gen.window() == 30  # the authors' time window
    gen.resolved = gen.resolve(PROFILES.get("smoke"))
    assert gen.window() == 5
    gen.resolved = gen.resolve(PROFILES.get("paper"))
    assert gen.window() == 30
    # a smoke run on the paper's backbone takes the paper profile's defaults
    assert FairDiffusion({"backbone": "paper"}).resolve(PROFILES.get("smoke"))["window"] == 30
    assert FairDiffusion({"window": 7}).window() == 7
    with pytest.raises(ValueError, match="window"):
        FairDiffusion({"window": 1})
