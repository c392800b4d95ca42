"""Sketch diversity with and without Kim & Hong's similarity loss (Eq. 6), over seeds.

Usage::

    python benchmarks/sketch_diversity.py [--task phantom-cxr-finding] [--profile cpu]
        [--images 24] [--seeds 0 1 2] [--weight 0.2] [--json OUT.jsonl]

For each seed, ``--images`` training images of the task (a seeded draw) are sketched with
the profile's sketch settings of ``sketch-controlnet`` (``sketch_config()``: at cpu 16
strokes, 40 iterations, a 32-px canvas, n = 3 sketches per image, penalty from iteration 15)
under four conditions: no similarity loss (weight 0) and the loss at ``--weight`` with each
low-level metric the method offers offline (``mse``, ``psnr``, ``ssim``; alpha 0.5 with the
``layout`` high-level term). The n sketches of every image are rendered at the task's size
(8-bit, black on white) and scored with the harness's own image metrics
(:mod:`benchmark.metrics.similarity`, not the loss's functions):

- diversity, the mean over an image's pairs i < j (then over images) of: MSE, PSNR (dB;
  lower is more diverse), 1 - SSIM, and the layout distance 1 - cos(pooled ink 4x4 + 8x8);
- fidelity, the mean and the minimum over sketches of the edge recall
  (:func:`methods.sketch_controlnet.sketch.edge_recall`: the share of the image's XDoG edge
  pixels within 1 px of ink).

A seed's value is the mean over its images; the table gives the mean over seeds with the
95% Student-t interval (:func:`benchmark.sweep.seed_interval`). CPU only: 20-33 s per seed and
condition at the cpu settings (24 images, 1 thread beside another run, 2026-12-08).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from itertools import combinations

import numpy as np

from benchmark import PROFILES, TASKS
from benchmark.metrics.similarity import mse, psnr, ssim
from benchmark.runner import load_task_data, split
from benchmark.sweep import seed_interval
from methods.sketch_controlnet.generator import SketchControlNet
from methods.sketch_controlnet.sketch import edge_recall, extract_sketches, xdog

METRICS = ("mse", "psnr_db", "one_minus_ssim", "layout_distance", "edge_recall_mean",
           "edge_recall_min")


def layout_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cosine similarity of the 4x4 and 8x8 block means of the ink (1 - pixel / 255);
    0 for the same layout, 1 for disjoint ink."""
    def feats(x: np.ndarray) -> np.ndarray:
        ink = 1.0 - x.astype(np.float64) / 255.0
        h = ink.shape[0]
        return np.concatenate([ink.reshape(k, h // k, k, h // k).mean((1, 3)).ravel()
                               for k in (4, 8)])
    fa, fb = feats(a), feats(b)
    den = np.linalg.norm(fa) * np.linalg.norm(fb)
    return 1.0 - float(fa @ fb / den) if den > 0 else 1.0


def score(images: list[np.ndarray], sketches: list, size: int) -> dict[str, float]:
    """Per-image diversity of its sketches and their fidelity, averaged over images."""
    rows: dict[str, list[float]] = {k: [] for k in METRICS}
    for im, sk in zip(images, sketches, strict=True):
        inks = [s.render(size) for s in sk]
        u8 = [np.round(255 * (1 - ink)).astype(np.uint8) for ink in inks]
        pairs = list(combinations(range(len(u8)), 2))
        a = [u8[i] for i, _ in pairs]
        b = [u8[j] for _, j in pairs]
        rows["mse"].append(float(np.mean(mse(a, b))))
        rows["psnr_db"].append(float(np.mean(np.minimum(psnr(a, b), 100.0))))
        rows["one_minus_ssim"].append(float(np.mean(1.0 - ssim(a, b))))
        rows["layout_distance"].append(float(np.mean([layout_distance(x, y)
                                                      for x, y in zip(a, b, strict=True)])))
        edges = 1.0 - xdog(im)
        recall = [edge_recall(ink, edges) for ink in inks]
        rows["edge_recall_mean"].append(float(np.mean(recall)))
        rows["edge_recall_min"].append(float(np.min(recall)))
    return {k: float(np.mean(v)) for k, v in rows.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="phantom-cxr-finding")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--weight", type=float, default=0.2)
    ap.add_argument("--json", help="append one line per seed and condition to this file")
    args = ap.parse_args(argv)

    task, prof = TASKS.get(args.task), PROFILES.get(args.profile)
    gen = SketchControlNet()
    gen.resolved = gen.resolve(prof)
    base_cfg = gen.sketch_config()
    conditions = {"none": replace(base_cfg, similarity_weight=0.0)}
    for low in ("mse", "psnr", "ssim"):
        conditions[low] = replace(base_cfg, similarity_weight=args.weight, low_level=low)
    train = split(load_task_data(task, prof), "train")
    results: dict[str, list[dict[str, float]]] = {c: [] for c in conditions}
    for seed in args.seeds:
        rows = np.random.default_rng([seed, 31]).choice(len(train), args.images, replace=False)
        images = [np.asarray(train[int(i)]["image"].convert("L")) for i in sorted(rows)]
        for name, cfg in conditions.items():
            t0 = time.perf_counter()
            sketches = extract_sketches(images, cfg, seed=seed)
            row = score(images, sketches, task.image_size)
            row.update(seed=seed, condition=name, seconds=round(time.perf_counter() - t0, 1))
            results[name].append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps({**row, "task": args.task, "profile": args.profile,
                                         "images": args.images, "weight": args.weight,
                                         "config": cfg.as_dict()}) + "\n")
    print(f"\n{args.task}, {args.profile} sketch settings, {args.images} images x "
          f"{base_cfg.n} sketches, seeds {args.seeds}: mean [95% t-interval] over seeds\n")
    print("| condition | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for name, rows in results.items():
        cells = []
        for m in METRICS:
            s = seed_interval([r[m] for r in rows])
            lo, hi = s.get("ci_low"), s.get("ci_high")
            cells.append(f"{s['mean']:.4g} [{lo:.4g}, {hi:.4g}]" if lo is not None
                         else f"{s['mean']:.4g}")
        label = "no similarity loss" if name == "none" else f"loss, l = {name}"
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
