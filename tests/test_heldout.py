"""Held-out intersections on the embedded default (phantom-cxr-heldout): the cells are out of
every training batch, in the plan, and scored apart from the seen cells."""

from __future__ import annotations

import dataclasses
import math

import datasets
import numpy as np
import pytest
from conftest import make_rows
from stand_ins import MeanStdMax

from benchmark.diffusion import (
    DiffusionTrainer,
    TrainConfig,
    TrainingHooks,
    build_backbone,
    build_train_data,
)
from benchmark.evaluation import KEY_HELD_OUT, generation_metrics, held_out_labels
from benchmark.generators import allocate
from benchmark.metrics.frechet import fid
from benchmark.profiles import PROFILES
from benchmark.runner import load_task_data, split
from benchmark.schema import FEATURES
from benchmark.tasks import TASKS

TASK = TASKS.get("phantom-cxr-heldout")
HELD = {("female", "80+"), ("male", "18-39")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import isolated_cache_dir

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRSYNTH_CACHE", isolated_cache_dir(tmp_path_factory))
        return load_task_data(TASK, PROFILES.get("smoke"))


def _cells(ds):
    return list(zip(ds["sex"], ds["age_group"], strict=True))


def test_the_task_removes_the_held_out_cells_from_training_only(data):
    assert set(TASK.held_out_groups) == HELD
    train, test = split(data, "train"), split(data, "test")
    assert not HELD & set(_cells(train))
    assert HELD <= set(_cells(test))  # still scored
    # the same phantom without the held-out rule has them in training (the check can fail)
    everything = load_task_data(TASKS.get("phantom-cxr-finding"), PROFILES.get("smoke"))
    assert HELD <= set(_cells(split(everything, "train")))


class _Recorder(TrainingHooks):
    def __init__(self):
        self.seen: list[int] = []
        self.cells: list[tuple[str, str]] = []

    def training_loss(self, batch):
        d = batch.data
        for i, s, a in zip(batch.indices.tolist(), batch.group_ids["sex"].tolist(),
                           batch.group_ids["age_group"].tolist(), strict=True):
            self.seen.append(i)
            self.cells.append((d.group_names["sex"][s], d.group_names["age_group"][a]))
        return super().training_loss(batch)


def test_held_out_cells_are_absent_from_every_training_batch_over_a_full_epoch(data, tmp_path):
    train = split(data, "train")
    b = build_backbone("smoke", image_channels=1, seed=0)
    td = build_train_data(b, train, TASK, progress=False)
    bs = 16
    steps = math.ceil(len(td) / bs)
    hooks = _Recorder()
    cfg = TrainConfig(steps=steps, batch_size=bs, lr=1e-4, lr_schedule="constant",
                      checkpoint_every=steps, ema_decay=0.0, seed=0)
    DiffusionTrainer(b, td, cfg, tmp_path / "w", hooks=hooks, progress=False).train()
    assert set(hooks.seen) == set(range(len(td)))  # the full epoch was seen
    assert len(hooks.cells) == steps * bs
    assert not HELD & set(hooks.cells)
    # both attributes of each held-out cell are still learned from other cells
    assert {"female", "male"} <= set(td.group_names["sex"])
    assert {"80+", "18-39"} <= set(td.group_names["age_group"])


def test_allocation_requests_the_held_out_cells(data):
    train = split(data, "train")
    plan = allocate(train, TASK, 200, seed=0)
    got = {(dict(r.group)["sex"], dict(r.group)["age_group"]): 0 for r in plan.rows}
    for r in plan.rows:
        got[(dict(r.group)["sex"], dict(r.group)["age_group"])] += r.count
    assert HELD <= set(got) and all(got[c] > 0 for c in HELD)
    assert plan.total == 200
    # a task without held-out groups requests no cell it has no training image of
    plain = allocate(train, TASKS.get("phantom-cxr-finding"), 200, seed=0)
    assert not HELD & {(dict(r.group)["sex"], dict(r.group)["age_group"]) for r in plain.rows}


def _rows(n, seed, split_name):
    rows = make_rows(n, seed)
    ages = ["80+", "18-39", "40-59", "60-79"]
    rows["sex"] = ["female" if i % 2 else "male" for i in range(n)]
    rows["age_group"] = [ages[(i // 2) % 4] for i in range(n)]
    rows["split"] = [split_name] * n
    return datasets.Dataset.from_dict(rows, features=FEATURES)


def test_evaluation_scores_the_held_out_cells_apart():
    real, syn = _rows(40, 1, "test"), _rows(40, 2, "train")
    profile = dataclasses.replace(PROFILES.get("smoke"), eval_real=40, eval_synthetic=40,
                                  bootstrap_resamples=5)
    ex = MeanStdMax()
    out = generation_metrics(real, syn, TASK, profile, extractors={"inception": ex},
                             progress=False)
    sec = out[KEY_HELD_OUT]
    assert sec["groups"] == ["female x 80+", "male x 18-39"]
    lr, ls = held_out_labels(TASK, real), held_out_labels(TASK, syn)
    # female x 80+ (i % 8 == 1) and male x 18-39 (i % 8 == 2): a quarter of the rows
    assert lr.count("held_out") == 10 and ls.count("held_out") == 10
    f_r, f_s = ex.extract(list(np.asarray(i) for i in real["image"])), \
        ex.extract(list(np.asarray(i) for i in syn["image"]))
    for pool in ("held_out", "seen"):
        e = sec["fid"][pool]
        ir = [i for i, v in enumerate(lr) if v == pool]
        is_ = [i for i, v in enumerate(ls) if v == pool]
        assert (e["n_real"], e["n_synthetic"]) == (len(ir), len(is_))
        assert e["value"] == pytest.approx(fid(f_r[ir], f_s[is_]), rel=1e-6)
    cell = sec["fid"]["cells"]["female x 80+"]
    assert cell == out["fid_by_group"]["sex x age_group"]["female x 80+"]
    assert (cell["n_real"], cell["n_synthetic"]) == (5, 5)
    # the pools are not a grouping of the per-group tables nor of their summaries
    assert KEY_HELD_OUT not in out["fid_by_group"] and KEY_HELD_OUT not in out["es_fid"]
    assert KEY_HELD_OUT not in out["kid_by_group"]
    # a task without held-out groups has no such section
    plain = generation_metrics(real, syn, TASKS.get("phantom-cxr-finding"), profile,
                               extractors={"inception": ex}, progress=False)
    assert KEY_HELD_OUT not in plain
