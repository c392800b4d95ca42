"""Generation metrics of one run: real test images vs synthetic images, overall and per group.

The scored sets are seeded random subsets of at most ``profile.eval_real`` real test images
and ``profile.eval_synthetic`` synthetic images (InceptionV3 is slow on a CPU); every FID is
recorded with the numbers of images on each side.
"""

from __future__ import annotations

import logging
from typing import Any

import datasets
import numpy as np

from .metrics import FeatureCache, FeatureExtractor, fid, fid_by_group, fid_variance
from .profiles import Profile
from .tasks import Task

log = logging.getLogger(__name__)


def seeded_subset(ds: datasets.Dataset, n: int, seed: int) -> datasets.Dataset:
    """At most ``n`` rows of ``ds``, drawn without replacement with ``seed`` (order kept)."""
    if len(ds) <= n:
        return ds
    rng = np.random.default_rng(seed)
    return ds.select(np.sort(rng.choice(len(ds), size=n, replace=False)).tolist())


def image_arrays(ds: datasets.Dataset, channels: int) -> list[np.ndarray]:
    """The images of ``ds`` as uint8 arrays, (H, W) for 1 channel or (H, W, 3) for 3."""
    mode = "L" if channels == 1 else "RGB"
    return [np.asarray(img.convert(mode)) for img in ds["image"]]


def generation_metrics(
    real: datasets.Dataset,
    synthetic: datasets.Dataset,
    task: Task,
    profile: Profile,
    *,
    extractor: FeatureExtractor,
    seed: int = 0,
    cache: FeatureCache | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """FID overall, per group of each sensitive attribute, and the variance of group FIDs."""
    out: dict[str, Any] = {
        "feature_extractor": {"name": extractor.name, "cache_key": extractor.cache_key},
        "fid": None,
        "fid_by_group": {},
        "fid_variance": {},
    }
    if len(synthetic) == 0:
        out["fid"] = {"value": None, "n_real": 0, "n_synthetic": 0,
                      "reason": "the method generated no synthetic images"}
        return out
    real = seeded_subset(real, profile.eval_real, seed)
    synthetic = seeded_subset(synthetic, profile.eval_synthetic, seed + 1)
    log.info("scoring %d real test and %d synthetic images with %s", len(real), len(synthetic),
             extractor.name)
    f_real = extractor.extract(image_arrays(real, task.channels), cache=cache,
                               batch_size=profile.feature_batch_size, progress=progress)
    f_syn = extractor.extract(image_arrays(synthetic, task.channels), cache=cache,
                              batch_size=profile.feature_batch_size, progress=progress)
    n_real, n_syn = len(f_real), len(f_syn)
    if n_real >= 2 and n_syn >= 2:
        out["fid"] = {"value": fid(f_real, f_syn), "n_real": n_real, "n_synthetic": n_syn,
                      "reason": None}
    else:
        out["fid"] = {"value": None, "n_real": n_real, "n_synthetic": n_syn,
                      "reason": "fewer than 2 images on a side"}
    for attr in task.sensitive_attributes:
        groups = fid_by_group(f_real, list(real[attr]), f_syn, list(synthetic[attr]))
        out["fid_by_group"][attr] = {
            str(g): {"value": r.value, "n_real": r.n_real, "n_synthetic": r.n_synthetic,
                     "reason": r.reason}
            for g, r in sorted(groups.items(), key=lambda kv: str(kv[0]))
        }
        out["fid_variance"][attr] = fid_variance(groups)
    return out
