"""One benchmark run: task -> data -> generator -> plan -> samples -> metrics -> record.

Each stage is one function call with a plain data type in between. A run directory holds the
stages' outputs; a re-run with the same config resumes from the last finished stage
(``checkpoint/``, ``synthetic/``) and from the feature cache.

Run directory layout (``<out>/<task>/<method>/<profile>-seed<seed>/``)::

    config.json      the full config (its sha256 is the record's config_hash)
    checkpoint/      the fitted generator (Generator.save); DONE holds the config hash
    plan.csv         the allocation plan
    synthetic/       synthetic images + metadata.csv; DONE beside it holds the config hash
    downstream/      one JSON per finished downstream classifier (keyed by its inputs) and
                     the per-epoch checkpoint of an unfinished one
    synthetic_grid.png  two synthetic images per subgroup (row) x class (column)
    result.json      the result record, written last and atomically
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

from .data import DATASETS, read_image_folder, write_image_folder
from .downstream.config import DownstreamConfig
from .evaluation import generation_metrics, scored_synthetic
from .generators import GENERATORS, FitContext, allocate
from .metrics import FeatureCache, FeatureExtractor, default_cache, default_cache_dir
from .metrics.spaces import feature_extractors
from .profiles import PROFILES, Profile
from .report.grid import sample_grid
from .results import (
    config_hash,
    device_info,
    make_record,
    package_versions,
    write_json_atomic,
)
from .schema import SchemaError, column, validate_dataset
from .tasks import TASKS, Task

log = logging.getLogger(__name__)

DATA_SEED = 0  # the phantom population is fixed; the run seed drives generators and scoring


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_task_data(task: Task, profile: Profile, *, root: str | Path | None = None
                   ) -> datasets.Dataset:
    """The task's samples (all splits) in the standard schema, restricted to its findings."""
    spec = DATASETS.get(task.dataset)
    if not spec.phantom and root is None:
        raise ValueError(
            f"dataset {spec.name!r} is not embedded: pass --root with your local copy "
            f"(see data_cards/{spec.card})"
        )
    ds = spec.loader(root=root, image_size=task.image_size, n_images=profile.phantom_images,
                     seed=DATA_SEED, split_salt=task.split_salt)
    validate_dataset(ds, source=spec.name)
    findings = column(ds, "finding")
    keep = [i for i, f in enumerate(findings) if task.class_of(f) is not None]
    dropped = Counter(f for f in findings if task.class_of(f) is None)
    if dropped:
        log.info("task %s: filtered out %d rows whose finding is outside the task: %s",
                 task.name, sum(dropped.values()), dict(dropped))
        ds = ds.select(keep)
    if task.held_out_groups:  # CompDiff-style zero-shot intersections: none in training
        held = set(task.held_out_groups)
        cells = task.cell_keys(ds)
        drop = [i for i, ((g, _), s) in enumerate(zip(cells, column(ds, "split"), strict=True))
                if s == "train" and g in held]
        if drop:
            log.info("task %s: removed %d training rows of the held-out groups %s",
                     task.name, len(drop), sorted(held))
            dropset = set(drop)
            ds = ds.select([i for i in range(len(ds)) if i not in dropset])
    for attr in task.sensitive_attributes:
        unknown = sum(v is None for v in column(ds, attr))
        if unknown:
            log.info("task %s: %d rows have unknown %s (kept, as their own group)",
                     task.name, unknown, attr)
    return ds


def split(ds: datasets.Dataset, name: str) -> datasets.Dataset:
    splits = column(ds, "split")
    return ds.select([i for i, s in enumerate(splits) if s == name])


def dataset_fingerprint(ds: datasets.Dataset) -> str:
    """sha256 over every row's metadata and encoded image bytes, in row order."""
    h = hashlib.sha256()
    raw = ds.cast_column("image", datasets.Image(decode=False))
    meta = raw.remove_columns("image").to_pandas()
    h.update(pd.util.hash_pandas_object(meta.astype(str), index=False).values.tobytes())
    for img in raw["image"]:
        data = img["bytes"] if img["bytes"] is not None else Path(img["path"]).read_bytes()
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def run_dir_for(out: str | Path, task: str, method: str, profile: str, seed: int) -> Path:
    return Path(out) / task / method / f"{profile}-seed{seed}"


def run_config(task: Task, method: str, method_config: dict[str, Any], profile: Profile,
               seed: int, root: str | Path | None,
               extractors: dict[str, FeatureExtractor]) -> dict[str, Any]:
    """The full config of a run: everything its numbers depend on (hashed into the record)."""
    return {
        "task": task.as_dict(),
        "method": {"name": method, "config": method_config},
        "profile": profile.as_dict(),
        "seed": seed,
        "data_seed": DATA_SEED,
        "root": str(root) if root is not None else None,
        "feature_spaces": {name: ex.cache_key for name, ex in sorted(extractors.items())},
    }


def downstream_cache_dir() -> Path:
    """``$FAIRSYNTH_CACHE/downstream``: results of real-only classifiers, shared between runs
    (keyed by all their inputs), so every method's run reuses the same reference row."""
    return default_cache_dir().parent / "downstream"


def run_downstream(data: datasets.Dataset, synthetic: datasets.Dataset | None, task: Task,
                   config: DownstreamConfig, *, seed: int, work_dir: Path, device: str,
                   extractor: FeatureExtractor, cache: FeatureCache | None, batch_size: int,
                   progress: bool, profile: Profile | None = None) -> dict[str, Any]:
    """The downstream stage on a task's splits (see :mod:`benchmark.downstream`). With the
    run's ``profile``, the saliency diversity metric draws its generated images first from
    those the generation metrics scored (their Inception features are cached)."""
    from .downstream.evaluate import downstream_metrics

    prefer = None
    if profile is not None and synthetic is not None and "sample_id" in synthetic.column_names:
        prefer = column(scored_synthetic(synthetic, profile, seed), "sample_id")

    return downstream_metrics(
        train=split(data, "train"), val=split(data, "val"), test=split(data, "test"),
        synthetic=synthetic, task=task, config=config, seed=seed, work_dir=work_dir,
        device=device, extractor=extractor, cache=cache, feature_batch_size=batch_size,
        progress=progress, shared_dir=downstream_cache_dir(), sdm_prefer_ids=prefer)


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def __call__(self, stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[stage] = round(time.perf_counter() - t0, 3)


def run(
    *,
    method: str,
    task: str,
    profile: str,
    seed: int = 0,
    out: str | Path = "runs",
    root: str | Path | None = None,
    method_config: dict[str, Any] | None = None,
    feature_cache: FeatureCache | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run one method on one task under one profile; return the result record."""
    task_obj = TASKS.get(task)
    gen_cls = GENERATORS.get(method)
    prof = PROFILES.get(profile)
    generator = gen_cls(method_config)
    generator.progress = progress
    device = pick_device()
    spaces = feature_extractors(task_obj, device=device, profile=prof.name)
    cache = feature_cache if feature_cache is not None else default_cache()
    config = run_config(task_obj, method, generator.config, prof, seed, root, spaces.available)
    chash = config_hash(config)
    rdir = run_dir_for(out, task, method, profile, seed)
    rdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(rdir / "config.json", config)
    timer = _Timer()
    t_start = time.perf_counter()
    seed_everything(seed)

    data = timer("load_data", lambda: load_task_data(task_obj, prof, root=root))
    train, test = split(data, "train"), split(data, "test")
    log.info("data: %d images (train %d, test %d)", len(data), len(train), len(test))
    fingerprint = timer("fingerprint", lambda: dataset_fingerprint(data))

    ckpt, ckpt_done = rdir / "checkpoint", rdir / "checkpoint.DONE"
    if ckpt_done.is_file() and ckpt_done.read_text() == chash:
        log.info("resuming: loading the fitted generator from %s", ckpt)
        generator = timer("fit", lambda: gen_cls.load(ckpt))
        generator.progress = progress
    else:
        ckpt_done.unlink(missing_ok=True)
        ctx = FitContext(task=task_obj, profile=profile, seed=seed, device=device,
                         work_dir=rdir / "work")
        timer("fit", lambda: generator.fit(train, ctx))
        generator.save(ckpt)
        ckpt_done.write_text(chash)

    budget = round(prof.synthetic_ratio * len(train))
    plan = allocate(train, task_obj, budget, seed=seed)
    pd.DataFrame(plan.as_records()).to_csv(rdir / "plan.csv", index=False)

    syn_dir, syn_done = rdir / "synthetic", rdir / "synthetic.DONE"
    if syn_done.is_file() and syn_done.read_text() == chash:
        log.info("resuming: reading synthetic images from %s", syn_dir)
        synthetic = timer("sample", lambda: read_image_folder(
            syn_dir, required_attributes=task_obj.sensitive_attributes, progress=progress))
    else:
        syn_done.unlink(missing_ok=True)
        seed_everything(seed)
        synthetic = timer("sample", lambda: generator.sample(plan))
        validate_dataset(synthetic, source=f"{method} samples")
        timer("write_samples", lambda: write_image_folder(synthetic, syn_dir, progress=progress))
        syn_done.write_text(chash)
    if len(synthetic):  # a look at the samples: rows = subgroup, columns = class
        sample_grid(synthetic, task_obj, rdir / "synthetic_grid.png", per_cell=2,
                    title=f"{method} samples ({task}, profile {profile}, seed {seed})")

    metrics = timer("evaluate", lambda: generation_metrics(
        test, synthetic, task_obj, prof, extractors=spaces.available,
        unavailable_spaces=spaces.unavailable, seed=seed, cache=cache, device=device,
        progress=progress))
    all_metrics: dict[str, Any] = {"generation": metrics}
    if prof.downstream.enabled:
        all_metrics["downstream"] = timer("downstream", lambda: run_downstream(
            data, synthetic, task_obj, prof.downstream, seed=seed, work_dir=rdir / "downstream",
            device=device, extractor=spaces.available.get("inception"), cache=cache,
            batch_size=prof.feature_batch_size, progress=progress, profile=prof))
    timer.timings["total"] = round(time.perf_counter() - t_start, 3)

    record = make_record(
        task=task,
        method=method,
        profile=profile,
        seed=seed,
        config=config,
        config_hash=chash,
        dataset_fingerprint=fingerprint,
        packages=package_versions(),
        device=device_info(device),
        timings_s=timer.timings,
        counts={
            "data": len(data),
            "train": len(train),
            "test": len(test),
            "plan_total": plan.total,
            "plan_cells": len(plan.rows),
            "synthetic": len(synthetic),
        },
        metrics=all_metrics,
    )
    write_json_atomic(rdir / "result.json", record)
    record["_path"] = str(rdir / "result.json")
    return record


def evaluate_folder(
    *,
    task: str,
    synthetic_dir: str | Path,
    profile: str,
    seed: int = 0,
    out: str | Path | None = None,
    root: str | Path | None = None,
    feature_cache: FeatureCache | None = None,
    progress: bool = True,
    downstream: bool = False,
) -> dict[str, Any]:
    """Score a folder of images (+ metadata.csv) against the task's real test split.

    With ``downstream``, also train the profile's downstream classifiers on real, real +
    these images, and these images only (CAS), and score them on the real test split.
    """
    task_obj = TASKS.get(task)
    prof = PROFILES.get(profile)
    synthetic_dir = Path(synthetic_dir)
    synthetic = read_image_folder(synthetic_dir, required_attributes=task_obj.sensitive_attributes,
                                  progress=progress)
    outside = Counter(f for f in synthetic["finding"] if task_obj.class_of(f) is None)
    if outside:
        raise SchemaError(
            f"{synthetic_dir}/metadata.csv: finding(s) {dict(outside)} are not classes of task "
            f"{task}; expected {', '.join(task_obj.classes)}"
        )
    device = pick_device()
    spaces = feature_extractors(task_obj, device=device, profile=prof.name)
    cache = feature_cache if feature_cache is not None else default_cache()
    config = run_config(task_obj, "external", {"synthetic_dir": str(synthetic_dir)}, prof, seed,
                        root, spaces.available)
    config["downstream_stage"] = downstream
    out_path = Path(out) if out is not None else synthetic_dir.parent / "evaluation"
    timer = _Timer()
    data = timer("load_data", lambda: load_task_data(task_obj, prof, root=root))
    test = split(data, "test")
    metrics = timer("evaluate", lambda: generation_metrics(
        test, synthetic, task_obj, prof, extractors=spaces.available,
        unavailable_spaces=spaces.unavailable, seed=seed, cache=cache, device=device,
        progress=progress))
    all_metrics: dict[str, Any] = {"generation": metrics}
    if downstream:
        all_metrics["downstream"] = timer("downstream", lambda: run_downstream(
            data, synthetic, task_obj, prof.downstream, seed=seed,
            work_dir=out_path / "downstream", device=device,
            extractor=spaces.available.get("inception"), cache=cache,
            batch_size=prof.feature_batch_size, progress=progress, profile=prof))
    timer.timings["total"] = round(sum(timer.timings.values()), 3)
    record = make_record(
        task=task,
        method="external",
        profile=profile,
        seed=seed,
        config=config,
        config_hash=config_hash(config),
        dataset_fingerprint=dataset_fingerprint(data),
        packages=package_versions(),
        device=device_info(device),
        timings_s=timer.timings,
        counts={"data": len(data), "test": len(test), "synthetic": len(synthetic)},
        metrics=all_metrics,
    )
    write_json_atomic(out_path / "result.json", record)
    record["_path"] = str(out_path / "result.json")
    return record
