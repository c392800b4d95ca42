"""Mask adherence: does a generated image follow the segmentation mask it was conditioned on?

A ControlNet conditioned on label masks (``cardiac-controlnet``: the control image stacks the
row's own frame's mask in channel 0, the other frame's in channel 1) promises images whose
anatomy lies where the mask says. This module checks it with a segmentation of the generated
image that knows nothing of the generator nor of the phantom's drawing code: a per-pixel
intensity classifier fitted on the real training images and their masks.

Segmenter (:func:`fit_mask_segmenter`), fitted once per run on real training rows (image
``x``, mask ``M``; tissue ``c(M)``: background, blood pool = both cavities, myocardium):

    ROI(M)   = dilate(M > 0, m pixels)            the heart and a margin of m pixels
    N[c, b]  = 1 + #{pixels p in ROI(M) over the training rows: c(M(p)) = c, bin(x(p)) = b}
               (B = 32 equal bins of the intensity on [0, 1]; +1: Laplace smoothing)

Segmentation of a generated image ``x`` with control mask ``M`` (:meth:`MaskSegmenter.segment`):

    t(p)     = argmax_c N[c, bin(x(p))] for p in ROI(M), background outside
               (the maximum a posteriori tissue of the pixel's intensity under the histogram
               class densities and the class priors of the training ROIs)
    MYO      = {t = myocardium};  C = binary closing of MYO (one iteration)
    LV       = fill_holes(C) minus C               the pixels enclosed by myocardium
    RV       = {t = blood pool} minus LV

Score (:func:`mask_adherence`), per image i and structure s in (LV blood pool, LV
myocardium, RV blood pool), with S_i^s the segmentation's and M_i^s the control's pixels:

    Dice_i^s = 2 |S_i^s ∩ M_i^s| / (|S_i^s| + |M_i^s|)      (undefined when both are empty)
    score_i  = mean of the defined Dice_i^s                 (averaged over structures)
    value    = (1/n) Σ_i score_i                            (averaged over images, so over
                                                             the ED and ES frames they show)

per structure ``(1/n_s) Σ_i Dice_i^s`` and per group of each sensitive attribute the mean of
``score_i`` over the group's images. In [0, 1]; **higher is better**. Its ceiling is not 1:
the same segmenter on real test images and their own masks (``real`` in the record) is the
level a perfect generator reaches; a mask shifted off the heart scores far lower (tested).

Which mask labels are which structure is read from the training masks, not assumed: the
myocardium is the label with the lowest mean training intensity (dark myocardium in bSSFP
cine), the LV blood pool the other label whose pixels lie most inside the filled myocardium.
That maps the phantom's encoding (1 LV, 2 myocardium, 3 RV) and ACDC's (1 RV, 2 myocardium,
3 LV) alike.

References: Dice, "Measures of the amount of ecologic association between species", Ecology
26 (1945) (the coefficient; computed by torchmetrics' ``dice_score``); the
segment-the-output controllability check of mask-conditioned generators as in Li et al.,
"ControlNet++: Improving Conditional Controls with Efficient Consistency Feedback", ECCV
2024 (there with a pretrained segmenter, here a fitted intensity classifier); Duda, Hart and
Stork, *Pattern Classification*, 2nd ed. (2001), ch. 2 and 4 (Bayes decision with histogram
density estimates).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

#: Result key of the block in ``metrics.generation``.
KEY_MASK_ADHERENCE = "mask_adherence"
#: The scored structures (names as the cardiac phantom's ``MASK_LABELS``).
STRUCTURES: tuple[str, ...] = ("lv_blood_pool", "lv_myocardium", "rv_blood_pool")
#: Tissue classes of the segmenter.
BACKGROUND, BLOOD, MYOCARDIUM = 0, 1, 2
BINS = 32
UNKNOWN = "unknown"


def default_margin(image_size: int) -> int:
    """The ROI margin in pixels: 3 at 64 px, scaled with the image side (at least 1)."""
    return max(1, round(3 * int(image_size) / 64))


def _bins(image: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((image.astype(np.float64) / 255.0 * bins).astype(np.int64), bins - 1)


def _roi(mask: np.ndarray, margin: int) -> np.ndarray:
    return ndimage.binary_dilation(mask > 0, iterations=margin)


def _check_pair(image: np.ndarray, mask: np.ndarray, what: str) -> None:
    if image.ndim != 2 or image.shape != mask.shape:
        raise ValueError(f"mask adherence: {what}: image {image.shape} and mask {mask.shape} "
                         "must be 2-D of one shape")


@dataclass(frozen=True)
class MaskSegmenter:
    """The fitted intensity segmenter (see the module docstring).

    ``counts``: (3, bins) histogram counts N[c, b] of background, blood pool and myocardium;
    ``labels``: structure name -> its label value in the dataset's masks.
    """

    counts: np.ndarray
    labels: Mapping[str, int]
    margin: int
    n_fit: int

    def segment(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The label image (the dataset's encoding) of a uint8 grey ``image`` whose ROI is
        that of ``mask`` (the control)."""
        _check_pair(image, mask, "segment")
        t = np.argmax(self.counts[:, _bins(image, self.counts.shape[1])], axis=0)
        t[~_roi(mask, self.margin)] = BACKGROUND
        myo = t == MYOCARDIUM
        closed = ndimage.binary_closing(myo, iterations=1)
        lv = ndimage.binary_fill_holes(closed) & ~closed
        out = np.zeros(image.shape, np.uint8)
        out[(t == BLOOD) & ~lv] = self.labels["rv_blood_pool"]
        out[myo] = self.labels["lv_myocardium"]
        out[lv] = self.labels["lv_blood_pool"]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"method": "intensity-histogram Bayes classifier in the dilated control mask, "
                          "LV = blood pool enclosed by myocardium",
                "bins": int(self.counts.shape[1]), "roi_margin_px": self.margin,
                "n_fit_images": self.n_fit, "labels": dict(self.labels)}


def fit_mask_segmenter(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], *,
                       bins: int = BINS, margin: int | None = None) -> MaskSegmenter:
    """Fit the segmenter on real uint8 grey ``images`` and their label ``masks`` (0
    background and exactly three structure labels, as in the module docstring)."""
    if not images or len(images) != len(masks):
        raise ValueError(f"mask adherence: fitting needs images with one mask each, got "
                         f"{len(images)} images and {len(masks)} masks")
    values = sorted({int(v) for m in masks for v in np.unique(m)} - {0})
    if len(values) != 3:
        raise ValueError(f"mask adherence: the training masks hold labels {values} besides 0; "
                         "expected three structures (LV blood pool, myocardium, RV blood pool)")
    margin = default_margin(images[0].shape[0]) if margin is None else int(margin)
    sums = {v: [0.0, 0] for v in values}
    enclosed = {v: [0, 0] for v in values}
    for i, (x, m) in enumerate(zip(images, masks, strict=True)):
        _check_pair(x, m, f"training row {i}")
        for v in values:
            sel = m == v
            sums[v][0] += float(x[sel].sum())
            sums[v][1] += int(sel.sum())
    myo = min(values, key=lambda v: sums[v][0] / max(sums[v][1], 1))
    tissue = np.full(256, BLOOD, np.int64)
    tissue[0], tissue[myo] = BACKGROUND, MYOCARDIUM
    counts = np.ones((3, bins))
    for x, m in zip(images, masks, strict=True):
        roi = _roi(m, margin)
        np.add.at(counts, (tissue[m[roi]], _bins(x[roi], bins)), 1)
        inside = ndimage.binary_fill_holes(m == myo)
        for v in values:
            enclosed[v][0] += int((inside & (m == v)).sum())
            enclosed[v][1] += int((m == v).sum())
    cavities = [v for v in values if v != myo]
    lv = max(cavities, key=lambda v: enclosed[v][0] / max(enclosed[v][1], 1))
    rv = next(v for v in cavities if v != lv)
    return MaskSegmenter(counts=counts, labels={"lv_blood_pool": lv, "lv_myocardium": myo,
                                                "rv_blood_pool": rv},
                         margin=margin, n_fit=len(images))


def structure_dice(pred: Sequence[np.ndarray], target: Sequence[np.ndarray],
                   labels: Mapping[str, int]) -> np.ndarray:
    """(n, len(labels)) Dice of every image and structure (torchmetrics ``dice_score``,
    samplewise, per class); NaN where a structure is in neither image."""
    import torch
    from torchmetrics.functional.segmentation import dice_score

    if not len(pred):
        return np.zeros((0, len(labels)))
    p = torch.as_tensor(np.stack(pred).astype(np.int64))
    t = torch.as_tensor(np.stack(target).astype(np.int64))
    k = int(max(p.max(), t.max(), *labels.values())) + 1
    d = dice_score(p, t, num_classes=k, include_background=False, average="none",
                   input_format="index").reshape(len(pred), k - 1).numpy().astype(np.float64)
    return d[:, [int(v) - 1 for v in labels.values()]]


def _by_group(scores: np.ndarray, groups: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    out: dict[str, Any] = {"by_group": {}, "gap": {}, "worst": {}}
    for attr, values in groups.items():
        g = np.array([UNKNOWN if v is None or (isinstance(v, float) and v != v) else str(v)
                      for v in values], dtype=object)
        known = g != UNKNOWN
        by: dict[str, Any] = {}
        out["gap"][attr] = out["worst"][attr] = None
        if known.any():
            frame = MetricFrame(metrics={"value": lambda t, p: float(np.mean(p)),
                                         "n": lambda t, p: len(p)},
                                y_true=np.zeros(int(known.sum())), y_pred=scores[known],
                                sensitive_features=pd.Series(g[known].astype(str), name=attr))
            by = {str(k): {"value": float(r["value"]), "n": int(r["n"])}
                  for k, r in frame.by_group.sort_index().iterrows()}
            out["gap"][attr] = float(frame.difference(method="between_groups")["value"])
            out["worst"][attr] = float(frame.group_min()["value"])
        if (~known).any():  # reported with its count, never in the gap or the worst group
            by[UNKNOWN] = {"value": float(np.mean(scores[~known])), "n": int((~known).sum()),
                           "in_summaries": False}
        out["by_group"][attr] = by
    return out


def mask_adherence(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                   segmenter: MaskSegmenter, *,
                   groups: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """Mask adherence of uint8 grey ``images`` to their control ``masks`` (the formulas of
    the module docstring), overall, per structure and per group of each grouping in
    ``groups`` (one value per image).

    Returns ``{"value", "n", "n_without_structures", "by_structure": {s: {"value", "n"}},
    "by_group": {attr: {group: {"value", "n"}}}, "gap": {attr}, "worst": {attr}}``; ``value``
    is None (with a ``reason``) when no image has a structure to score.
    """
    if len(images) != len(masks):
        raise ValueError(f"mask adherence: {len(images)} images but {len(masks)} masks")
    for attr, values in (groups or {}).items():
        if len(values) != len(images):
            raise ValueError(f"mask adherence: grouping {attr!r} has {len(values)} values for "
                             f"{len(images)} images")
    for i, (x, m) in enumerate(zip(images, masks, strict=True)):
        _check_pair(x, m, f"image {i}")
    preds = [segmenter.segment(x, m) for x, m in zip(images, masks, strict=True)]
    d = structure_dice(preds, list(masks), segmenter.labels)
    defined = ~np.isnan(d)
    ok = defined.any(axis=1)
    scores = np.array([np.nanmean(r) if r_ok else np.nan for r, r_ok in zip(d, ok,
                                                                          strict=True)])
    out: dict[str, Any] = {"value": None, "n": int(ok.sum()),
                           "n_without_structures": int((~ok).sum()), "by_structure": {},
                           "by_group": {}, "gap": {}, "worst": {}}
    for j, s in enumerate(segmenter.labels):
        col = d[defined[:, j], j]
        out["by_structure"][s] = {"value": float(col.mean()) if col.size else None,
                                  "n": int(col.size)}
    if not ok.any():
        out["reason"] = "no image has a structure in its mask or its segmentation"
        return out
    if (~ok).any():
        log.info("mask adherence: %d image(s) without any structure are left out", (~ok).sum())
    out["value"] = float(scores[ok].mean())
    out.update(_by_group(scores[ok], {a: [v for v, k in zip(vals, ok, strict=True) if k]
                                      for a, vals in (groups or {}).items()}))
    return out
