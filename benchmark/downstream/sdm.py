"""The saliency diversity metric (SDM) of a run, per class, with the task's real classifier.

The metric itself (formula, reference, choices) is :func:`benchmark.metrics.saliency.
saliency_diversity`. This module picks its inputs for a run:

- classifier: the downstream stage's classifier trained on the real training split (its first
  CNN backbone), i.e. the task's classifier, never one that saw synthetic images; its
  gradient saliency is taken at its own input size (``DownstreamConfig.image_size``, else the
  task's), where the dispersion and sharpness are measured too;
- generated set G: the run's synthetic images of the class;
- reference set R (coverage target): the real test images of the class, the set the other
  generation metrics compare to;
- held-out set H (the scale): the real validation images of the class, disjoint from R and
  from the training split;
- feature space of the coverage: the extractor given, in a run InceptionV3 pool3 features
  (cached with the generation metrics', so G and R cost nothing extra).

G and H are seeded random subsets of at most ``DownstreamConfig.sdm_images_per_class``
images each; in a run G is drawn first from the synthetic images the generation metrics
scored (their features are in the feature cache), so it costs no second Inception pass.
A class without enough images on a side gets ``score = None`` and a reason.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import datasets
import numpy as np
import torch

from ..metrics.prdc import PRDC_K
from ..metrics.saliency import KEY_SDM, saliency_diversity
from ..schema import column
from ..tasks import Task
from .classifier import ArrayData, torch_threads

log = logging.getLogger(__name__)

#: Fewest images of a class in G and H (a variance needs 2); R needs k + 1 (coverage).
MIN_SET = 2
#: Neighbours of the coverage radius: the harness's k (Naeem et al.'s 5).
SDM_K = PRDC_K


class SaliencyClassifier:
    """A trained downstream classifier as the float-in-[0, 1] -> logits callable that
    :func:`~benchmark.metrics.saliency.gradient_saliency` differentiates (the classifier's own
    input normalisation applied inside)."""

    def __init__(self, model: torch.nn.Module, norm: tuple[torch.Tensor, torch.Tensor],
                 device: torch.device | str):
        self.model = model.eval()
        self.device = torch.device(device)
        self.mean, self.std = (t.to(self.device) for t in norm)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return self.model((x - self.mean) / self.std).float().cpu()


def _hwc(images: np.ndarray) -> list[np.ndarray]:
    """(N, C, S, S) uint8 -> list of (S, S) or (S, S, C) arrays."""
    return [im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0) for im in images]


def _features(ds: datasets.Dataset, rows: np.ndarray, task: Task, extractor: Any, cache: Any,
              batch_size: int, progress: bool) -> np.ndarray:
    mode = "L" if task.channels == 1 else "RGB"
    arrays = [np.asarray(im.convert(mode)) for im in ds.select(rows.tolist())["image"]]
    return extractor.extract(arrays, cache=cache, batch_size=batch_size, progress=progress)


def _draw(idx: np.ndarray, n: int, rng: np.random.Generator,
          preferred: np.ndarray | None = None) -> np.ndarray:
    """At most ``n`` of ``idx``, drawn at random without replacement. With ``preferred`` (a
    mask over ``idx``: the images the generation metrics scored, a seeded random subset of
    the same images, so a random draw from it is still a random subset of the class) those
    are taken first and only the rest is drawn from the other rows: the SDM then adds no
    Inception pass over images whose features the generation metrics already cached."""
    if len(idx) <= n:
        return idx
    if preferred is None or not preferred.any():
        return np.sort(rng.choice(idx, size=n, replace=False))
    first, rest = idx[preferred], idx[~preferred]
    take = first if len(first) <= n else rng.choice(first, size=n, replace=False)
    more = rng.choice(rest, size=n - len(take), replace=False) if len(take) < n else rest[:0]
    return np.sort(np.concatenate([take, more]))


def saliency_diversity_by_class(
    *,
    classifier: SaliencyClassifier,
    task: Task,
    synthetic: datasets.Dataset,
    synthetic_arr: ArrayData,
    test: datasets.Dataset,
    test_arr: ArrayData,
    val: datasets.Dataset,
    val_arr: ArrayData,
    extractor: Any,
    cache: Any = None,
    images_per_class: int = 200,
    seed: int = 0,
    batch_size: int = 24,
    cpu_threads: int | None = None,
    progress: bool = False,
    prefer_ids: Collection[str] | None = None,
) -> dict[str, Any]:
    """``{"by_class": {class: SaliencyDiversity.as_dict() | {"score": None, "reason"}},
    "mean_score": mean over the classes with a score, "settings": {...}}``.

    The ``*_arr`` arguments are the datasets as the classifier sees them (resized uint8,
    same row order as the datasets). ``prefer_ids``: ``sample_id`` values of the synthetic
    images the generation metrics scored (drawn into G first, see :func:`_draw`)."""
    settings = {"classifier": "downstream real-only classifier",
                "feature_space": getattr(extractor, "name", None),
                "reference": "real test", "heldout": "real val", "k": SDM_K,
                "images_per_class": images_per_class, "image_size": int(test_arr.images.shape[-1])}
    if extractor is None:
        return {"by_class": {}, "mean_score": None, "settings": settings,
                "reason": "the InceptionV3 feature extractor is unavailable"}
    rng = np.random.default_rng(seed + 3)
    prefer = None
    if prefer_ids and "sample_id" in synthetic.column_names:
        wanted = set(prefer_ids)
        prefer = np.array([i in wanted for i in column(synthetic, "sample_id")], dtype=bool)
    by_class: dict[str, Any] = {}
    for c, name in enumerate(task.classes):
        g_all = np.flatnonzero(synthetic_arr.labels == c)
        g_idx = _draw(g_all, images_per_class, rng,
                      None if prefer is None else prefer[g_all])
        h_idx = _draw(np.flatnonzero(val_arr.labels == c), images_per_class, rng)
        r_idx = np.flatnonzero(test_arr.labels == c)
        short = [f"{len(ix)} {side} image(s), needs {need}" for ix, side, need in (
            (g_idx, "synthetic", MIN_SET), (h_idx, "held-out real (val)", MIN_SET),
            (r_idx, "reference real (test)", SDM_K + 1)) if len(ix) < need]
        if short:
            by_class[name] = {"score": None, "reason": "; ".join(short),
                              "n_generated": len(g_idx), "n_heldout": len(h_idx),
                              "n_reference": len(r_idx)}
            continue
        feats = {side: _features(ds, ix, task, extractor, cache, batch_size, progress)
                 for side, ds, ix in (("g", synthetic, g_idx), ("h", val, h_idx),
                                      ("r", test, r_idx))}
        with torch_threads(cpu_threads):
            res = saliency_diversity(
                generated=_hwc(synthetic_arr.images[g_idx]), heldout=_hwc(val_arr.images[h_idx]),
                generated_features=feats["g"], reference_features=feats["r"],
                heldout_features=feats["h"], classifier=classifier, target=c, k=SDM_K)
        by_class[name] = res.as_dict()
        if res.score is None:
            by_class[name]["reason"] = "a held-out real quantity is 0 (nothing to scale by)"
        log.info("%s %s: %s", KEY_SDM, name, "undefined" if res.score is None else
                 f"{res.score:.3f} (coverage {res.coverage_ratio:.3f}, dispersion "
                 f"{res.dispersion_ratio:.3f}, sharpness {res.sharpness_ratio:.3f})")
    scores = [v["score"] for v in by_class.values() if v.get("score") is not None]
    return {"by_class": by_class, "mean_score": float(np.mean(scores)) if scores else None,
            "settings": settings}
