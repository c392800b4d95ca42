"""One benchmark run: task -> data -> generator -> plan -> samples -> metrics -> record.

Each stage is one function call with a plain data type in between. A run directory holds the
stages' outputs; a re-run with the same config resumes from the last finished stage
(``checkpoint/``, ``synthetic/``) and from the feature cache.

Run directory layout (``<out>/<task>/<method>/<profile>-seed<seed>/``)::

    config.json      the full config: task, the method's resolved options (no None placeholders
                     for profile defaults), the whole profile, seed, feature spaces and the
                     code version (its sha256 is the record's config_hash)
    checkpoint/      the fitted generator (Generator.save); checkpoint.DONE certifies the config
                     hash and the sha256 of every file in it (benchmark.markers)
    plan.csv         the allocation plan (with each group's majority score under
                     ``--allocation majority-score``; the record's ``allocation`` keeps them)
                     and its budget rule (``budget``: ``ratio=<r>`` or ``per-class=<N>``)
    synthetic/       synthetic images + metadata.csv; synthetic.DONE certifies the config hash,
                     the sha256 of every image and of metadata.csv, and the checkpoint's digest
                     (a refitted model or a replaced image makes the stage run again)
    downstream/      one JSON per finished downstream classifier (keyed by its inputs) and
                     the per-epoch checkpoint of an unfinished one
    synthetic_grid.png  two synthetic images per subgroup (row) x class (column)
    report.html      the run's report (benchmark.report.html), written after result.json

A method that declares a base (:attr:`Generator.base`) gets it fitted first as an ordinary run
of the base method in that method's own run folder (:func:`base_stage`), or reused from there
when its config hash matches; the run's config names the base and its hash.
    result.json      the result record, written last and atomically
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

from .data import DATASETS, read_image_folder, write_image_folder
from .downstream.config import DownstreamConfig
from .evaluation import generation_metrics, scored_synthetic
from .generators import ALLOCATIONS, GENERATORS, FitContext, Generator, Plan, resolve_budget
from .markers import certified_digest, check_marker, write_marker
from .metrics import FeatureCache, FeatureExtractor, default_cache, default_cache_dir
from .metrics.spaces import feature_extractors
from .profiles import PROFILES, Profile
from .report.grid import sample_grid
from .report.html import report_run
from .results import (
    code_version,
    config_hash,
    device_info,
    make_record,
    package_versions,
    write_json_atomic,
)
from .schema import IMAGE_COLUMNS, SchemaError, column, validate_dataset
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
    """The task's samples (all splits) in the standard schema, as the task selects them
    (:meth:`Task.select`)."""
    spec = DATASETS.get(task.dataset)
    if not spec.phantom and root is None:
        raise ValueError(
            f"dataset {spec.name!r} is not embedded: pass --root with your local copy "
            f"(see data_cards/{spec.card})"
        )
    ds = spec.loader(root=root, image_size=task.image_size, n_images=profile.phantom_images,
                     seed=DATA_SEED, split_salt=task.split_salt)
    validate_dataset(ds, source=spec.name)
    return task.select(ds)


def split(ds: datasets.Dataset, name: str) -> datasets.Dataset:
    splits = column(ds, "split")
    return ds.select([i for i, s in enumerate(splits) if s == name])


def dataset_fingerprint(ds: datasets.Dataset) -> str:
    """sha256 over every row's metadata and the content of its image (mask, control) files, in row
    order; file paths are not hashed, so the same images in another folder give the same
    fingerprint."""
    h = hashlib.sha256()
    files = [c for c in IMAGE_COLUMNS if c in ds.column_names]
    raw = ds
    for c in files:
        raw = raw.cast_column(c, datasets.Image(decode=False))
    meta = raw.remove_columns(files).to_pandas()
    h.update(pd.util.hash_pandas_object(meta.astype(str), index=False).values.tobytes())
    for c in files:
        h.update(c.encode())
        for img in column(raw, c):
            if img is None:
                h.update(b"\0none")
                continue
            data = img["bytes"] if img["bytes"] is not None else Path(img["path"]).read_bytes()
            h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


MAX_SEED = 2**32 - 1  # numpy's seed range


def check_seed(seed: object) -> int:
    """``seed`` if it is an integer in [0, MAX_SEED], else a ValueError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed {seed!r}: expected an integer in [0, {MAX_SEED}]")
    return seed


def run_dir_for(out: str | Path, task: str, method: str, profile: str, seed: int) -> Path:
    return Path(out) / task / method / f"{profile}-seed{seed}"


def run_config(task: Task, method: str, method_config: dict[str, Any], profile: Profile,
               seed: int, root: str | Path | None,
               extractors: dict[str, FeatureExtractor], *, allocation: str | None = None
               ) -> dict[str, Any]:
    """The full config of a run: everything its numbers depend on (hashed into the record):
    ``method_config`` is the generator's resolved options (:meth:`Generator.resolve`), the
    profile every per-profile setting, ``allocation`` the allocation strategy (a run of a
    generator; None for scoring an external folder), ``code`` the package version and git
    commit."""
    return {
        "task": task.as_dict(),
        "method": {"name": method, "config": method_config},
        **({"allocation": allocation} if allocation is not None else {}),
        "profile": profile.as_dict(),
        "seed": seed,
        "data_seed": DATA_SEED,
        "root": str(root) if root is not None else None,
        "feature_spaces": {name: ex.cache_key for name, ex in sorted(extractors.items())},
        "code": code_version(),
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


def fit_stage(gen_cls: type[Generator], generator: Generator, rdir: Path, chash: str,
              train: datasets.Dataset, ctx: FitContext, timer: _Timer, *, progress: bool,
              stage: str = "fit") -> tuple[Generator, str]:
    """Fit ``generator`` into ``rdir/checkpoint`` or load it from there when
    ``checkpoint.DONE`` certifies the files for ``chash``; returns the generator and the
    checkpoint's digest (what later stages are certified against)."""
    ckpt, ckpt_done = rdir / "checkpoint", rdir / "checkpoint.DONE"
    stale = check_marker(ckpt_done, config_hash=chash, output=ckpt)
    if stale is None:
        log.info("resuming: loading the fitted generator from %s", ckpt)
        try:
            loaded = timer(stage, lambda: gen_cls.load(ckpt))
            loaded.progress = progress
            generator = loaded
        except (OSError, ValueError, KeyError, RuntimeError) as err:  # certified yet unreadable
            stale = f"{ckpt} cannot be loaded ({' '.join(str(err).split())[:160]})"
    if stale is not None:
        if ckpt_done.exists() or ckpt.exists():
            log.info("fitting again: %s", stale)
        ckpt_done.unlink(missing_ok=True)
        shutil.rmtree(ckpt, ignore_errors=True)  # no file of an older model may be certified
        timer(stage, lambda: generator.fit(train, ctx))
        generator.save(ckpt)
        write_marker(ckpt_done, config_hash=chash, output=ckpt)
    return generator, certified_digest(ckpt_done)


def base_stage(generator: Generator, *, task: Task, prof: Profile, seed: int, out: Path,
               root: str | Path | None, extractors: dict[str, FeatureExtractor],
               train: datasets.Dataset, device: str, timer: _Timer, progress: bool
               ) -> dict[str, Any] | None:
    """Fit or reuse the base model a generator declares (:attr:`Generator.base`).

    The base is an ordinary run of the base method (options
    :meth:`Generator.base_config`, resolved against the profile) on the same task, profile
    and seed, in its own run folder: ``<out>/<task>/<base>/<profile>-seed<seed>/``, the
    folder ``benchmark run --method <base>`` uses, so a base run earlier is reused when its
    resolved config (hence its config hash) is the same; when that folder holds a run of
    the base with other options, the base goes to ``...-seed<seed>-<hash12>/`` instead.
    Returns ``{"method", "config_hash", "checkpoint", "digest"}`` (None without a base).
    """
    if generator.base is None:
        return None
    base_cls = GENERATORS.get(generator.base)
    resolved = base_cls(generator.base_config()).resolve(prof)
    base = base_cls(resolved)
    base.progress = progress
    config = run_config(task, generator.base, resolved, prof, seed, root, extractors,
                        allocation=base_cls.allocation)
    bhash = config_hash(config)
    bdir = run_dir_for(out, task.name, generator.base, prof.name, seed)
    if (bdir / "config.json").is_file():
        try:
            other = config_hash(json.loads((bdir / "config.json").read_text()))
        except ValueError:
            other = None
        if other != bhash:
            bdir = bdir.with_name(f"{bdir.name}-{bhash[:12]}")
    bdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(bdir / "config.json", config)
    log.info("base model: %s in %s", generator.base, bdir)
    ctx = FitContext(task=task, profile=prof, seed=seed, device=device, work_dir=bdir / "work")
    _, digest = fit_stage(base_cls, base, bdir, bhash, train, ctx, timer, progress=progress,
                          stage="fit_base")
    return {"method": generator.base, "config_hash": bhash,
            "checkpoint": str(bdir / "checkpoint"), "digest": digest}


def score_and_record(*, task: Task, prof: Profile, method: str, seed: int,
                     config: dict[str, Any], chash: str, data: datasets.Dataset,
                     synthetic: datasets.Dataset, fingerprint: str, spaces: Any,
                     cache: FeatureCache, device: str, downstream: bool,
                     out_dir: Path, counts: dict[str, int], timer: _Timer, progress: bool,
                     t_start: float, method_report: dict[str, Any] | None = None,
                     downstream_config: DownstreamConfig | None = None,
                     allocation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stages `run` and `evaluate_folder` share: generation metrics of ``synthetic``
    against the real test split, the downstream stage (when ``downstream``), and the result
    record (with the generator's ``method_report``, when it has one), written atomically to
    ``out_dir/result.json``; ``allocation`` is the plan's strategy and per-group scores
    (:meth:`Plan.allocation_record`), for a run of a generator."""
    test = split(data, "test")
    metrics = timer("evaluate", lambda: generation_metrics(
        test, synthetic, task, prof, extractors=spaces.available,
        unavailable_spaces=spaces.unavailable, seed=seed, cache=cache, device=device,
        progress=progress, train=split(data, "train")))
    all_metrics: dict[str, Any] = {"generation": metrics}
    if downstream:
        all_metrics["downstream"] = timer("downstream", lambda: run_downstream(
            data, synthetic, task, downstream_config or prof.downstream, seed=seed,
            work_dir=out_dir / "downstream",
            device=device, extractor=spaces.available.get("inception"), cache=cache,
            batch_size=prof.feature_batch_size, progress=progress, profile=prof))
    timer.timings["total"] = round(time.perf_counter() - t_start, 3)
    record = make_record(
        task=task.name, method=method, profile=prof.name, seed=seed, config=config,
        config_hash=chash, dataset_fingerprint=fingerprint, packages=package_versions(),
        device=device_info(device), timings_s=timer.timings,
        counts={"data": len(data), **counts, "test": len(test), "synthetic": len(synthetic)},
        metrics=all_metrics,
        **({"method_report": method_report} if method_report else {}),
        **({"allocation": allocation} if allocation is not None else {}),
    )
    write_json_atomic(out_dir / "result.json", record)
    record["_path"] = str(out_dir / "result.json")
    return record


def check_required_columns(gen_cls: type[Generator], train: datasets.Dataset, task: Task
                           ) -> None:
    """Stop before fitting when the training rows lack a column the generator needs
    (:attr:`Generator.required_columns`): one ValueError line naming the column and task."""
    for col in gen_cls.required_columns:
        if col not in train.column_names:
            raise ValueError(f"method {gen_cls.name!r} needs the column {col!r}; the training "
                             f"rows of task {task.name!r} have none")
        values = train.cast_column(col, datasets.Image(decode=False))[col] if isinstance(
            train.features[col], datasets.Image) else train[col]
        missing = sum(v is None for v in values)
        if missing:
            raise ValueError(f"method {gen_cls.name!r} needs the column {col!r} in every "
                             f"training row; {missing} of {len(train)} rows of task "
                             f"{task.name!r} have none")


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
    allocation: str | None = None,
    synthetic_per_class: int | None = None,
) -> dict[str, Any]:
    """Run one method on one task under one profile; return the result record.
    ``allocation`` names the allocation strategy (:data:`benchmark.generators.ALLOCATIONS`;
    default: the generator's :attr:`Generator.allocation`). ``synthetic_per_class`` N asks
    for N synthetic images per class instead of the profile's ratio of the training set
    (default: the task's, :func:`benchmark.generators.resolve_budget`)."""
    task_obj = TASKS.get(task)
    gen_cls = GENERATORS.get(method)
    prof = PROFILES.get(profile)
    check_seed(seed)
    budget = resolve_budget(task_obj, prof, synthetic_per_class)
    allocation = allocation if allocation is not None else gen_cls.allocation
    allocate = ALLOCATIONS.get(allocation)
    # options resolved against the profile once: config.json holds the values that run
    resolved = gen_cls(method_config).resolve(prof)
    generator = gen_cls(resolved)
    generator.progress = progress
    device = pick_device()
    spaces = feature_extractors(task_obj, device=device, profile=prof.name)
    cache = feature_cache if feature_cache is not None else default_cache()
    timer = _Timer()
    t_start = time.perf_counter()
    seed_everything(seed)

    data = timer("load_data", lambda: load_task_data(task_obj, prof, root=root))
    train = split(data, "train")
    log.info("data: %d images (train %d, test %d)", len(data), len(train),
             len(split(data, "test")))
    fingerprint = timer("fingerprint", lambda: dataset_fingerprint(data))
    check_required_columns(gen_cls, train, task_obj)

    # a base model first (fitted, or reused by its config hash); the run's config names it
    base = base_stage(generator, task=task_obj, prof=prof, seed=seed, out=Path(out), root=root,
                      extractors=spaces.available, train=train, device=device, timer=timer,
                      progress=progress)
    config = run_config(task_obj, method, resolved, prof, seed, root, spaces.available,
                        allocation=allocation)
    if base is not None:
        config["base"] = {k: base[k] for k in ("method", "config_hash", "digest")}
    if budget.rule != "ratio":  # (the ratio is the profile's: ratio runs' hashes unchanged)
        config["budget"] = budget.as_record()
    overrides = generator.downstream_overrides()
    downstream_config = replace(prof.downstream, **overrides)
    if overrides:  # the method's downstream protocol (only when set: other hashes unchanged)
        config["downstream_overrides"] = dict(sorted(overrides.items()))
    chash = config_hash(config)
    rdir = run_dir_for(out, task, method, profile, seed)
    rdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(rdir / "config.json", config)

    seed_everything(seed)
    ctx = FitContext(task=task_obj, profile=prof, seed=seed, device=device,
                     work_dir=rdir / "work",
                     base_checkpoint=Path(base["checkpoint"]) if base else None)
    generator, ckpt_digest = fit_stage(gen_cls, generator, rdir, chash, train, ctx, timer,
                                       progress=progress)
    # the synthetic folder is certified for these exact weights: a refitted model resamples
    model_inputs = {"checkpoint": ckpt_digest}

    def make_plan() -> Plan:
        """The plan stage: allocation of the budget (the profile's ratio of the training set,
        or N per class), then the method's per-image conditioning (e.g. sketches); the plan
        carries its budget rule into plan.csv and the record, whatever the method does."""
        allocated = allocate(train, task_obj, budget.request(len(train), task_obj), seed=seed)
        return replace(generator.condition_plan(replace(allocated, budget=budget), train),
                       budget=budget)

    log.info("budget: %s (%s)", budget.label(), allocation)
    plan = timer("plan", make_plan)
    pd.DataFrame(plan.as_records()).to_csv(rdir / "plan.csv", index=False)

    syn_dir, syn_done = rdir / "synthetic", rdir / "synthetic.DONE"
    stale = check_marker(syn_done, config_hash=chash, output=syn_dir, inputs=model_inputs)
    if stale is None:
        log.info("resuming: reading synthetic images from %s", syn_dir)
        try:
            synthetic = timer("sample", lambda: read_image_folder(
                syn_dir, required_attributes=task_obj.sensitive_attributes, progress=progress,
                allow_empty=True))
        except (OSError, ValueError) as err:
            stale = f"{syn_dir} cannot be read ({' '.join(str(err).split())[:160]})"
    if stale is not None:
        if syn_done.exists() or syn_dir.exists():
            log.info("sampling again: %s", stale)
        syn_done.unlink(missing_ok=True)
        seed_everything(seed)
        synthetic = timer("sample", lambda: generator.sample(plan))
        validate_dataset(synthetic, source=f"{method} samples")
        timer("write_samples", lambda: write_image_folder(synthetic, syn_dir, progress=progress))
        write_marker(syn_done, config_hash=chash, output=syn_dir, inputs=model_inputs)
    if len(synthetic):  # a look at the samples: rows = subgroup, columns = class
        sample_grid(synthetic, task_obj, rdir / "synthetic_grid.png", per_cell=2,
                    title=f"{method} samples ({task}, profile {profile}, seed {seed})")

    record = score_and_record(
        task=task_obj, prof=prof, method=method, seed=seed, config=config, chash=chash,
        data=data, synthetic=synthetic, fingerprint=fingerprint, spaces=spaces, cache=cache,
        device=device, downstream=downstream_config.enabled, out_dir=rdir,
        downstream_config=downstream_config,
        counts={"train": len(train), "plan_total": plan.total, "plan_cells": len(plan.rows)},
        timer=timer, progress=progress, t_start=t_start, method_report=generator.report(),
        allocation=plan.allocation_record())
    report_run(rdir, tsne=prof.name != "smoke")  # report.html (smoke: no t-SNE, for speed)
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
    check_seed(seed)
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
    # the images' content (image bytes + metadata), not the folder's path: the same images
    # anywhere give the same config hash
    config = run_config(task_obj, "external",
                        {"synthetic_fingerprint": dataset_fingerprint(synthetic),
                         "synthetic_images": len(synthetic)}, prof, seed, root, spaces.available)
    config["downstream_stage"] = downstream
    out_path = Path(out) if out is not None else synthetic_dir.parent / "evaluation"
    timer = _Timer()
    t_start = time.perf_counter()
    data = timer("load_data", lambda: load_task_data(task_obj, prof, root=root))
    return score_and_record(
        task=task_obj, prof=prof, method="external", seed=seed, config=config,
        chash=config_hash(config), data=data, synthetic=synthetic,
        fingerprint=dataset_fingerprint(data), spaces=spaces, cache=cache, device=device,
        downstream=downstream, out_dir=out_path, counts={}, timer=timer, progress=progress,
        t_start=t_start)
