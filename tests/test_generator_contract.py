"""The contract every registered generator keeps, run at smoke size on a phantom task.

Every name in ``GENERATORS`` (methods, baselines and the planted-bias diagnostics, entry-point
plugins included) goes through ``fit`` / ``sample`` / ``save`` / ``load``: the samples match
the plan's count in every (subgroup, class) cell, validate against the schema, say
``source == "synthetic:<name>"``, and a loaded generator samples the same images as the saved
one for the same plan seed. A new plugin is covered without editing this file; the few
generators whose documented behaviour is to deviate from the plan are listed in
:data:`PLAN_DEVIATIONS` with the contract they keep instead. Diffusion generators train a
smoke-size model for a few steps (:data:`DIFFUSION_OPTIONS`): 4-8 s each, measured on 2 CPU
cores shared with other jobs (load average 8).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import isolated_cache_dir

from benchmark import GENERATORS, FitContext, Plan, allocate
from benchmark.data import DATASETS
from benchmark.diffusion import DiffusionGenerator
from benchmark.profiles import PROFILES
from benchmark.schema import validate_dataset
from benchmark.tasks import TASKS, Task

TASK = TASKS.get("phantom-cxr-finding")
BUDGET = 10  # synthetic images in the plan: a few cells, the smallest first
PLAN_SEED = 7
#: Options of every diffusion generator here: the smoke profile's sizes, fewer steps (the
#: contract is about the protocol, not the images' quality).
DIFFUSION_OPTIONS = {"steps": 3, "checkpoint_every": 3}


def fit_context(task: Task, *, seed: int, work_dir: Path,
                base_checkpoint: Path | None = None) -> FitContext:
    """The one place this test builds a run's FitContext (smoke profile, CPU)."""
    return FitContext(task=task, profile=PROFILES.get("smoke"), seed=seed, device="cpu",
                      work_dir=work_dir, base_checkpoint=base_checkpoint)


def _options(cls) -> dict | None:
    return DIFFUSION_OPTIONS if issubclass(cls, DiffusionGenerator) else None


def _fitted_base(cls, train, task: Task, tmp_path: Path) -> Path | None:
    """The checkpoint of the base a generator declares (fitted like the runner does), else
    None."""
    if cls.base is None:
        return None
    base_cls = GENERATORS.get(cls.base)
    base = base_cls(_options(base_cls))
    base.progress = False
    base.fit(train, fit_context(task, seed=0, work_dir=tmp_path / "base-work"))
    base.save(tmp_path / "base" / "checkpoint")
    return tmp_path / "base" / "checkpoint"


def _cells(ds, attributes) -> Counter:
    """Rows per (subgroup values, finding) cell."""
    columns = [ds[a] for a in attributes]
    return Counter((tuple(col[i] for col in columns), f) for i, f in enumerate(ds["finding"]))


def _planned(plan: Plan) -> Counter:
    return Counter({(tuple(v for _, v in r.group), r.finding): r.count
                    for r in plan.rows if r.count})


def _follows_plan(gen, plan, out) -> None:
    assert len(out) == plan.total
    assert _cells(out, plan.attributes) == _planned(plan)


def _real_only(gen, plan, out) -> None:
    assert len(out) == 0  # documented: the real-data baseline adds no image


def _drop_subgroup(gen, plan, out) -> None:
    # documented: the dropped subgroup's budget goes to the other cells
    attr, group = gen.config["attribute"], gen.config["group"]
    assert len(out) == plan.total and group not in out[attr]
    assert _cells(out, plan.attributes) == _planned(gen.redistribute(plan))


#: Generators whose documented behaviour is to deviate from the plan, with the contract each
#: keeps instead; every other generator must follow the plan cell by cell.
PLAN_DEVIATIONS = {"real-only": _real_only, "drop-subgroup": _drop_subgroup}




#: The task of the generators that need a training column the default task lacks
#: (:attr:`Generator.required_columns`).
TASK_WITH = {"mask": TASKS.get("phantom-cardiac-hf")}


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """The task's smoke-size training split (rows of the task's classes only) and a plan."""
    return _smoke_data(TASK, tmp_path_factory)


def _smoke_data(task, tmp_path_factory):
    with pytest.MonkeyPatch.context() as m:
        m.setenv("FAIRSYNTH_CACHE", isolated_cache_dir(tmp_path_factory))
        spec = DATASETS.get(task.dataset)
        ds = spec.loader(root=None, image_size=task.image_size,
                         n_images=PROFILES.get("smoke").phantom_images, seed=0,
                         split_salt=task.split_salt)
    keep = [i for i, (f, s) in enumerate(zip(ds["finding"], ds["split"], strict=True))
            if s == "train" and task.class_of(f) is not None]
    train = ds.select(keep)
    plan = allocate(train, task, BUDGET, seed=PLAN_SEED)
    assert plan.total == BUDGET and sum(1 for r in plan.rows if r.count) >= 2
    return train, plan


def _pixels(ds) -> np.ndarray:
    return np.stack([np.asarray(im) for im in ds["image"]]) if len(ds) else np.zeros(0)


def test_every_generator_is_covered():
    names = set(GENERATORS.names())
    assert set(PLAN_DEVIATIONS) <= names  # no stale exception
    assert {"phantom-oracle", "sd-finetune", "oversample"} <= names


@pytest.mark.parametrize("name", GENERATORS.names())
def test_fit_sample_save_load(name, smoke_data, tmp_path, tmp_path_factory):
    train, plan = smoke_data
    cls = GENERATORS.get(name)
    task = TASK
    for col in cls.required_columns:
        task = TASK_WITH[col]
        train, plan = _smoke_data(task, tmp_path_factory)
    gen = cls(_options(cls))
    gen.progress = False
    gen.fit(train, fit_context(task, seed=0, work_dir=tmp_path / "fit-work",
                               base_checkpoint=_fitted_base(cls, train, task, tmp_path)))
    plan = gen.condition_plan(plan, train)  # as the runner does (default: unchanged)
    out = gen.sample(plan)

    validate_dataset(out, source=f"{name} samples")
    assert set(out["source"]) <= {f"synthetic:{name}"}
    assert len(set(out["sample_id"])) == len(out)
    PLAN_DEVIATIONS.get(name, _follows_plan)(gen, plan, out)
    if len(out):
        img = out[0]["image"]
        assert img.size == (task.image_size, task.image_size)
        assert img.mode == ("L" if task.channels == 1 else "RGB")

    # a saved and reloaded generator samples the same images for the same plan seed; the
    # checkpoint folder has no sibling work folder, so nothing is read from the fit's caches
    gen.save(tmp_path / "saved" / "checkpoint")
    again = cls.load(tmp_path / "saved" / "checkpoint")
    again.progress = False
    assert type(again) is cls and again.config == gen.config
    out2 = again.sample(again.condition_plan(plan, train))
    assert out2["sample_id"] == out["sample_id"] and out2["finding"] == out["finding"]
    assert np.array_equal(_pixels(out2), _pixels(out))
