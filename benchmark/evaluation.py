"""Generation metrics of one run: real test images vs synthetic images.

For every available feature space (:mod:`benchmark.metrics.spaces`): the Fréchet distance
(FID in the Inception space), KID, precision, recall, density and coverage, overall, per group
of each sensitive attribute and per intersection of attributes, with the summaries of the group
Fréchet distances (variance, equity-scaled, gap) and bootstrap intervals for all of them
(:func:`benchmark.metrics.table.generation_table`). Then the mean pairwise intra-class
diversity of the synthetic and of the real images under each image dissimilarity.

A task with ``fid_subsets`` (the cardiac tasks) also gets ``<fd key>_subsets`` per space
(``fid_subsets``): the Fréchet distance's mean and std over repeated random subsets of a
size, beside the real-vs-real lower bound, overall and per group of each attribute.

A task with held-out groups (:attr:`Task.held_out_groups`: intersections removed from the
training split, CompDiff's zero-shot setting) gets a :data:`KEY_HELD_OUT` section: the
Fréchet distance of every feature space (FID, ``fd_oracle``) of the held-out cells pooled,
of the seen cells pooled, and of each held-out intersection, and on phantoms the oracle's
adherence of the held-out and of the seen synthetic images, apart.

Synthetic images conditioned on a segmentation mask (a ``control`` column, from the folder's
``control_path``, on a task whose training rows carry ``mask``: ``cardiac-controlnet``) get
:data:`~benchmark.metrics.mask_adherence.KEY_MASK_ADHERENCE` (:func:`mask_adherence_section`):
the Dice of a segmentation of each image with its control mask, with the real test images'
own level beside it.

The scored sets are seeded random subsets of at most ``profile.eval_real`` real test images
and ``profile.eval_synthetic`` synthetic images; every number is recorded with the numbers of
images it rests on. Features come from the on-disk cache when present.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from .grouping import INTERSECTION_SEP, is_unknown, label_of
from .metrics import FeatureCache, FeatureExtractor
from .metrics.frechet import KEY_SUBSETS, repeated_subset_fid
from .metrics.mask_adherence import KEY_MASK_ADHERENCE, fit_mask_segmenter, mask_adherence
from .metrics.similarity import (
    FEATURE_DISSIMILARITY,
    cosine_similarity,
    dissimilarities,
    mean_pairwise_diversity,
)
from .metrics.spaces import BASE_METRICS, FEATURE_SPACES, FRECHET, INCEPTION_SPACE
from .metrics.table import BY_GROUP, TableSettings, generation_table, summary_keys
from .profiles import Profile
from .tasks import Task

log = logging.getLogger(__name__)

#: Result keys of the evaluation record besides the per-space metric keys.
KEY_FEATURE_SPACES = "feature_spaces"
KEY_SETTINGS = "settings"
KEY_DIVERSITY = "diversity"
KEY_COUNTS = "counts"
#: The held-out intersections' section (tasks with :attr:`Task.held_out_groups`).
KEY_HELD_OUT = "held_out"
#: Its two pools: the cells removed from training, and every other cell.
HELD_OUT, SEEN = "held_out", "seen"


def seeded_subset(ds: datasets.Dataset, n: int, seed: int) -> datasets.Dataset:
    """At most ``n`` rows of ``ds``, drawn without replacement with ``seed`` (order kept)."""
    if len(ds) <= n:
        return ds
    rng = np.random.default_rng(seed)
    return ds.select(np.sort(rng.choice(len(ds), size=n, replace=False)).tolist())


def scored_synthetic(synthetic: datasets.Dataset, profile: Profile, seed: int
                     ) -> datasets.Dataset:
    """The synthetic images the generation metrics score (a seeded subset of at most
    ``profile.eval_synthetic``); later stages reuse their cached features."""
    return seeded_subset(synthetic, profile.eval_synthetic, seed + 1)


def image_arrays(ds: datasets.Dataset, channels: int) -> list[np.ndarray]:
    """The images of ``ds`` as uint8 arrays, (H, W) for 1 channel or (H, W, 3) for 3."""
    mode = "L" if channels == 1 else "RGB"
    return [np.asarray(img.convert(mode)) for img in ds["image"]]


def groupings(task: Task, real: datasets.Dataset, synthetic: datasets.Dataset
              ) -> tuple[dict[str, tuple[list, list]], tuple[list, list]]:
    """The task's groupings and the bootstrap strata, from its grouper
    (:class:`~benchmark.grouping.Grouper`): ``{grouping: (real labels, synthetic labels)}``
    over each sensitive attribute and each intersection (a row with an unknown value is in
    the grouping's ``unknown`` group), and ``(real strata, synthetic strata)``."""
    lr = task.grouper.labels(real, what="real test images")
    ls = task.grouper.labels(synthetic, what="synthetic images")
    out = {g: (lr.by_grouping[g], ls.by_grouping[g]) for g in task.grouper.groupings}
    return out, (lr.strata, ls.strata)


def held_out_labels(task: Task, ds: datasets.Dataset) -> list[str]:
    """:data:`HELD_OUT` for every row of one of the task's held-out groups (the zero-shot
    intersections removed from training), :data:`SEEN` for every other row."""
    held = set(task.held_out_groups)
    return [HELD_OUT if g in held else SEEN for g in task.grouper.values(ds)]


def _held_out_section(table: dict[str, Any], space: Any, task: Task) -> dict[str, Any]:
    """Move the held-out / seen pools of one space's table (scored as the extra grouping
    :data:`KEY_HELD_OUT`) out of its per-group entries and summaries, and return them with
    each held-out intersection's own entry: ``{held_out, seen, cells: {group: entry}}`` of
    the space's Fréchet distance (FID for Inception, ``fd_oracle`` for the oracle)."""
    key = space.key(FRECHET)
    pools = table[key + BY_GROUP].get(KEY_HELD_OUT, {})
    finest = table[key + BY_GROUP].get(task.grouper.finest, {})
    cells = {}
    for g in task.held_out_groups:
        label = INTERSECTION_SEP.join(label_of(v) for v in g)
        cells[label] = finest.get(label, {"value": None, "n_real": 0, "n_synthetic": 0,
                                          "reason": "no image of this cell was scored"})
    for base in BASE_METRICS:
        table[space.key(base) + BY_GROUP].pop(KEY_HELD_OUT, None)
    for k in summary_keys(space).values():
        table[k].pop(KEY_HELD_OUT, None)
    missing = {"value": None, "n_real": 0, "n_synthetic": 0,
               "reason": "no image of these cells was scored"}
    return {HELD_OUT: pools.get(HELD_OUT, missing), SEEN: pools.get(SEEN, missing),
            "cells": cells}


def subset_fids(f_r: np.ndarray, f_s: np.ndarray, groups: Mapping[str, tuple[list, list]],
                task: Task, *, seed: int) -> dict[str, Any]:
    """The task's repeated-subset Fréchet distance (:attr:`Task.fid_subsets`;
    :func:`~benchmark.metrics.frechet.repeated_subset_fid`) of the whole sets and of every
    known group of each sensitive attribute (``by_group``); the drawn indices are left out
    of the record."""
    size, repeats = task.fid_subsets

    def one(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        res = repeated_subset_fid(x, y, subset_size=size, repeats=repeats, seed=seed)
        res.pop("subsets")
        return res

    out = one(f_r, f_s)
    out["by_group"] = {}
    for attr in task.sensitive_attributes:
        lr, ls = groups[attr]
        out["by_group"][attr] = {
            g: one(f_r[[i for i, v in enumerate(lr) if v == g]],
                   f_s[[i for i, v in enumerate(ls) if v == g]])
            for g in sorted(set(lr) | set(ls), key=str) if not is_unknown(g)}
    return out


def _label_image(img: Any) -> np.ndarray:
    """A mask or control cell as a 2-D uint8 label image (channel 0 of a stacked control:
    the image's own frame)."""
    a = np.asarray(img)
    return a[..., 0] if a.ndim == 3 else a


def _masked_rows(ds: datasets.Dataset | None) -> list[int]:
    if ds is None or "mask" not in ds.column_names:
        return []
    return [i for i, m in enumerate(ds["mask"]) if m is not None]


def mask_adherence_section(real: datasets.Dataset, synthetic: datasets.Dataset,
                           train: datasets.Dataset | None, task: Task, profile: Profile, *,
                           seed: int) -> dict[str, Any] | None:
    """The mask adherence block (:mod:`benchmark.metrics.mask_adherence`) of the scored
    synthetic images that carry a ``control`` mask, or None when there is nothing to score
    (no control column, or no training masks to fit the segmenter on: e.g. sketch
    controls on a chest task). The segmenter is fitted on at most ``profile.eval_real``
    training rows with a mask (seeded); ``real`` is the same score of the scored real test
    images against their own masks (the level a perfect generator reaches)."""
    if "control" not in synthetic.column_names:
        return None
    with_control = [i for i, c in enumerate(synthetic["control"]) if c is not None]
    fit_rows = _masked_rows(train)
    if not with_control or not fit_rows:
        return None
    fit_ds = seeded_subset(train.select(fit_rows), profile.eval_real, seed + 2)
    segmenter = fit_mask_segmenter(image_arrays(fit_ds, 1),
                                   [_label_image(m) for m in fit_ds["mask"]])
    syn = synthetic.select(with_control)
    controls = [_label_image(c) for c in syn["control"]]
    allowed = {0, *segmenter.labels.values()}
    bad = [i for i, c in enumerate(controls) if not set(np.unique(c).tolist()) <= allowed]
    out: dict[str, Any] = {"segmentation": segmenter.as_dict(),
                           "frame": "channel 0 of the control (the image's own frame)",
                           "n_without_control": len(synthetic) - len(with_control)}
    if bad:
        log.warning("mask adherence: %d control image(s) are not label masks of the task "
                    "(values outside %s); not scored", len(bad), sorted(allowed))
        out.update(value=None, reason=f"{len(bad)} of {len(controls)} control images hold "
                                      f"values outside the mask labels {sorted(allowed)}")
        return out
    groups = {a: list(syn[a]) for a in task.sensitive_attributes}
    out.update(mask_adherence(image_arrays(syn, 1), controls, segmenter, groups=groups))
    real_rows = _masked_rows(real)
    if real_rows:
        ref = real.select(real_rows)
        res = mask_adherence(image_arrays(ref, 1), [_label_image(m) for m in ref["mask"]],
                             segmenter)
        out["real"] = {k: res[k] for k in ("value", "n", "by_structure")}
    return out


def table_settings(profile: Profile, seed: int) -> TableSettings:
    return TableSettings(bootstrap_resamples=profile.bootstrap_resamples, seed=seed)


def _empty(task: Task, spaces: Sequence[str], reason: str, n_real: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in spaces:
        space = FEATURE_SPACES.get(name)
        for base in BASE_METRICS:
            key = space.key(base)
            out[key] = {"value": None, "ci_low": None, "ci_high": None, "ci_resamples": 0,
                        "n_real": n_real, "n_synthetic": 0, "reason": reason}
            out[key + BY_GROUP] = {}
        for key in summary_keys(space).values():
            out[key] = {}
    return out


def class_diversity(
    arrays: Sequence[np.ndarray],
    classes: Sequence[Hashable],
    features: np.ndarray | None,
    *,
    fns: Mapping[str, Any],
    max_pairs: int,
    seed: int,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{class: {measure: Diversity.as_dict()}}``: mean pairwise dissimilarity within each
    class, for each image dissimilarity in ``fns`` and, with ``features``, 1 - cosine of the
    Inception features (the same pairs for every measure of a class)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in sorted({c for c in classes if c is not None}, key=str):
        idx = [i for i, k in enumerate(classes) if k == c]
        imgs = [arrays[i] for i in idx]
        res = {name: mean_pairwise_diversity(imgs, fn, max_pairs=max_pairs, seed=seed).as_dict()
               for name, fn in fns.items()}
        if features is not None:
            res[FEATURE_DISSIMILARITY] = mean_pairwise_diversity(
                features[idx], lambda a, b: 1.0 - cosine_similarity(a, b),
                max_pairs=max_pairs, seed=seed).as_dict()
        out[str(c)] = res
    return out


def generation_metrics(
    real: datasets.Dataset,
    synthetic: datasets.Dataset,
    task: Task,
    profile: Profile,
    *,
    extractors: Mapping[str, FeatureExtractor],
    unavailable_spaces: Mapping[str, str] | None = None,
    seed: int = 0,
    cache: FeatureCache | None = None,
    device: str = "cpu",
    progress: bool = True,
    train: datasets.Dataset | None = None,
) -> dict[str, Any]:
    """Every generation metric of a run (see the module docstring); ``extractors`` maps
    registered feature-space names to their extractors; ``train`` (the real training rows)
    fits the mask adherence segmenter."""
    for name in extractors:
        FEATURE_SPACES.get(name)  # unknown space names are errors
    settings = table_settings(profile, seed)
    out: dict[str, Any] = {
        KEY_FEATURE_SPACES: {
            **{name: {"available": True, "extractor": ex.name, "dim": ex.dim,
                      "cache_key": ex.cache_key} for name, ex in extractors.items()},
            **{name: {"available": False, "reason": why}
               for name, why in (unavailable_spaces or {}).items()},
        },
        KEY_SETTINGS: {
            "kid_subset_size": settings.kid_subset_size,
            "kid_subsets": settings.kid_subsets,
            "prdc_k": settings.prdc_k,
            "bootstrap": {"resamples": settings.bootstrap_resamples,
                          "level": settings.ci_level, "seed": settings.seed,
                          "method": "percentile; rows resampled within subgroup cells"},
            "diversity_pairs": profile.diversity_pairs,
        },
    }
    if len(synthetic) == 0:
        out[KEY_COUNTS] = {"real": 0, "synthetic": 0}
        out.update(_empty(task, list(extractors), "the method generated no synthetic images", 0))
        out[KEY_DIVERSITY] = {}
        return out
    real = seeded_subset(real, profile.eval_real, seed)
    synthetic = scored_synthetic(synthetic, profile, seed)
    out[KEY_COUNTS] = {"real": len(real), "synthetic": len(synthetic)}
    log.info("scoring %d real test and %d synthetic images in feature space(s) %s",
             len(real), len(synthetic), ", ".join(extractors))
    arrays_r = image_arrays(real, task.channels)
    arrays_s = image_arrays(synthetic, task.channels)
    groups, strata = groupings(task, real, synthetic)
    held = {}
    if task.held_out_groups:  # zero-shot intersections: scored apart from the seen cells
        groups = {**groups, KEY_HELD_OUT: (held_out_labels(task, real),
                                           held_out_labels(task, synthetic))}
        out[KEY_HELD_OUT] = held = {
            "groups": [INTERSECTION_SEP.join(label_of(v) for v in g)
                       for g in task.held_out_groups],
            "grouping": task.grouper.finest}
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, ex in extractors.items():
        f_r = ex.extract(arrays_r, cache=cache, batch_size=profile.feature_batch_size,
                         progress=progress)
        f_s = ex.extract(arrays_s, cache=cache, batch_size=profile.feature_batch_size,
                         progress=progress)
        feats[name] = (f_r, f_s)
        table = generation_table(f_r, f_s, FEATURE_SPACES.get(name), groupings=groups,
                                 strata=strata, settings=settings, progress=progress,
                                 device=device if device.startswith("cuda") else None)
        space = FEATURE_SPACES.get(name)
        if task.held_out_groups:
            held[space.key(FRECHET)] = _held_out_section(table, space, task)
        if task.fid_subsets:  # the cardiac paper's protocol: mean (std) over random subsets
            table[space.key(FRECHET) + KEY_SUBSETS] = subset_fids(f_r, f_s, groups, task,
                                                                  seed=seed)
        out.update(table)

    fns, missing = dissimilarities(device)
    for why in missing.values():
        log.warning("%s", why)
    inc = feats.get(INCEPTION_SPACE)
    out[KEY_DIVERSITY] = {
        "synthetic": class_diversity(
            arrays_s, [task.class_of(f) for f in synthetic["finding"]],
            inc[1] if inc else None, fns=fns, max_pairs=profile.diversity_pairs, seed=seed),
        "real": class_diversity(
            arrays_r, [task.class_of(f) for f in real["finding"]],
            inc[0] if inc else None, fns=fns, max_pairs=profile.diversity_pairs, seed=seed),
        "unavailable": missing,
    }
    masks = mask_adherence_section(real, synthetic, train, task, profile, seed=seed)
    if masks is not None:
        out[KEY_MASK_ADHERENCE] = masks
    oracle = getattr(extractors.get("oracle"), "oracle", None)
    if oracle is not None:  # phantom tasks: does each image show what it was asked for?
        from .oracle.adherence import KEY_ADHERENCE, dataset_adherence

        out[KEY_ADHERENCE] = dataset_adherence(oracle, synthetic, task)
        if task.held_out_groups:
            labels = held_out_labels(task, synthetic)
            held[KEY_ADHERENCE] = {}
            for pool in (HELD_OUT, SEEN):
                idx = [i for i, v in enumerate(labels) if v == pool]
                held[KEY_ADHERENCE][pool] = (
                    dataset_adherence(oracle, synthetic.select(idx), task) if idx else
                    {"n": 0, "reason": "no synthetic image of these cells"})
    return out
