"""``sketch-controlnet``: Kim & Hong (2025), "Multi-Modal Medical Image Augmentation for
Controlled Heterogeneity and Fair Outcomes" on the shared diffusion stack.

1. **Majority score** picks the groups to augment: the method's default allocation
   (:attr:`Generator.allocation` = ``majority-score``, :func:`benchmark.allocate_majority_score`).
2. **Sketch-image-text triplets**: ``triplets`` training images (seeded, spread over the
   task's cells) are sketched (:mod:`.sketch`); each triplet is (sketch, image, the cell's
   prompt).
3. **ControlNet** on the frozen base backbone (``sd-finetune``, fitted or reused by the
   runner: :attr:`Generator.base`), trained on the triplets (only the ControlNet learns; the
   stack's trainer).
4. **Sampling**: every planned image takes a real training image of its own cell
   (:func:`benchmark.attach_sources`); each source image gets ``sketches_per_image``
   sketches optimised together with the similarity penalty (Eq. 6), and its images cycle
   through them. The run folder keeps the sketches (``synthetic/controls/*.png`` through
   ``control_path``; SVGs under ``work/sketches/``) and ``sketch_grid.png``:
   image | sketches | generated.

Options and their per-profile defaults: :data:`SKETCH_PROFILE_DEFAULTS`; see the card
``methods/sketch_controlnet/README.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from benchmark import FitContext, OptionError, Plan, Profile, attach_sources
from benchmark.diffusion import (
    Backbone,
    ControlNetConfig,
    DiffusionGenerator,
    DiffusionTrainer,
    attach_controlnet,
    build_train_data,
)

from .sketch import (
    HIGH_LEVEL,
    LOW_LEVEL,
    Sketch,
    SketchConfig,
    extract_sketches,
    sketch_images,
)

log = logging.getLogger(__name__)

#: Per-profile defaults of the method's own options (a profile without a row takes ``cpu``'s).
#: ``paper``: the seed paper's 10 triplets, 1,000 strokes, 500 iterations, penalty from
#: iteration 100, and its ControlNet recipe (AdamW lr 1e-5, batch 1, 255 epochs on 10
#: triplets = 2,550 steps).
SKETCH_PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "smoke": {"triplets": 16, "sketch_strokes": 12, "sketch_iterations": 20,
              "sketch_canvas": 24, "sketches_per_image": 2, "images_per_source": 2,
              "start_iteration": 8},
    # cpu: the ControlNet trains 1,200 steps (half the profile's 2,400): measured
    # 2026-12-07 on phantom-cxr-finding seed 0, 2,400 steps took 446 s for fd_oracle 25.5 /
    # adherence 0.85 / FID 92.2, 1,200 steps 212 s for 34.5 / 0.89 / 85.0 (method card)
    "cpu": {"triplets": 64, "sketch_strokes": 16, "sketch_iterations": 40,
            "sketch_canvas": 32, "sketches_per_image": 3, "images_per_source": 6,
            "start_iteration": 15, "steps": 1200},
    "gpu": {"triplets": 256, "sketch_strokes": 128, "sketch_iterations": 300,
            "sketch_canvas": 128, "sketches_per_image": 3, "images_per_source": 3,
            "start_iteration": 100},
    "paper": {"triplets": 10, "sketch_strokes": 1000, "sketch_iterations": 500,
              "sketch_canvas": 224, "sketches_per_image": 3, "images_per_source": 3,
              "start_iteration": 100,
              "lr": 1e-5, "batch_size": 1, "steps": 2550, "lr_schedule": "constant",
              "warmup_steps": 0},
}

_SKETCH_KEYS = ("triplets", "sketch_strokes", "sketch_iterations", "sketch_canvas",
                "sketches_per_image", "images_per_source", "start_iteration")


class SketchControlNet(DiffusionGenerator):
    name = "sketch-controlnet"
    description = ("Kim & Hong 2025: majority-score allocation, similarity-penalised sketches, "
                   "a sketch-conditioned ControlNet on sd-finetune")
    base = "sd-finetune"
    allocation = "majority-score"
    default_config: Mapping[str, Any] = {
        **DiffusionGenerator.default_config,
        **{k: None for k in _SKETCH_KEYS},
        "similarity_weight": 0.2,
        "alpha": 0.5,
        "low_level": "mse",
        "high_level": "layout",
        "conditioning_scale": 1.0,
    }
    option_types = {**DiffusionGenerator.option_types, **{k: int for k in _SKETCH_KEYS}}

    def __init__(self, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        c = self.config
        if c["low_level"] not in LOW_LEVEL:
            raise OptionError(f"{self.name}: option low_level={c['low_level']!r}: expected one "
                              f"of {', '.join(LOW_LEVEL)}")
        if c["high_level"] not in HIGH_LEVEL:
            raise OptionError(f"{self.name}: option high_level={c['high_level']!r}: expected "
                              f"one of {', '.join(HIGH_LEVEL)}")
        if not 0 <= c["alpha"] <= 1:
            raise OptionError(f"{self.name}: option alpha={c['alpha']!r}: expected a float in "
                              "[0, 1]")
        for key in ("similarity_weight", "conditioning_scale"):
            if c[key] < 0:
                raise OptionError(f"{self.name}: option {key}={c[key]!r}: expected >= 0")
        for key in _SKETCH_KEYS:
            if c[key] is not None and c[key] < (0 if key == "start_iteration" else 1):
                raise OptionError(f"{self.name}: option {key}={c[key]!r}: expected an integer "
                                  f">= {0 if key == 'start_iteration' else 1}")
        self.work_dir: Path | None = None
        self.timings: dict[str, float] = {}
        self.sketch_report: dict[str, Any] = {}

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        own = SKETCH_PROFILE_DEFAULTS.get(profile.name, SKETCH_PROFILE_DEFAULTS["cpu"])
        return {**super().profile_defaults(profile), **own}

    def sketch_config(self, n: int | None = None) -> SketchConfig:
        r = self.resolved
        n = r["sketches_per_image"] if n is None else n
        return SketchConfig(strokes=r["sketch_strokes"], iterations=r["sketch_iterations"],
                            canvas=r["sketch_canvas"], n=n, alpha=r["alpha"],
                            start_iteration=r["start_iteration"],
                            similarity_weight=r["similarity_weight"] if n > 1 else 0.0,
                            low_level=r["low_level"], high_level=r["high_level"])

    # -- fit --------------------------------------------------------------------------------
    def triplet_rows(self, train: datasets.Dataset, seed: int) -> list[int]:
        """``triplets`` training rows spread over the task's cells: the cells in turn (in
        their sorted order), each taking its next row of a seeded shuffle."""
        assert self.task is not None
        members: dict[tuple, list[int]] = {}
        for i, key in enumerate(self.task.cell_keys(train)):
            if key[1] is not None:
                members.setdefault(key, []).append(i)
        rng = np.random.default_rng([seed, 14])
        queues = [list(rng.permutation(members[k])) for k in
                  sorted(members, key=lambda k: (tuple(v or "" for v in k[0]), k[1]))]
        want = min(self.resolved["triplets"], sum(len(q) for q in queues))
        out: list[int] = []
        while len(out) < want:
            for q in queues:
                if q and len(out) < want:
                    out.append(int(q.pop(0)))
        return sorted(out)

    def fit(self, train: datasets.Dataset, ctx: FitContext) -> None:
        self.resolved = self.resolve(ctx.profile)
        self.task, self.device = ctx.task, ctx.device
        if ctx.base_checkpoint is None:
            raise ValueError(f"{self.name}: needs the fitted base model ({self.base}); run it "
                             "through `benchmark run` (the runner fits or reuses the base)")
        work = Path(ctx.work_dir) if ctx.work_dir is not None else Path(
            tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.work_dir = work
        t0 = time.perf_counter()
        self.backbone = Backbone.from_pretrained(Path(ctx.base_checkpoint) / "backbone")
        attach_controlnet(self.backbone, ControlNetConfig(
            conditioning_channels=1, conditioning_scale=self.resolved["conditioning_scale"],
            seed=ctx.seed))
        rows = self.triplet_rows(train, ctx.seed)
        sub = train.select(rows)
        images = [np.asarray(im.convert("L")) for im in sub["image"]]
        t1 = time.perf_counter()
        sketches = extract_sketches(images, self.sketch_config(n=1), seed=ctx.seed,
                                    device=ctx.device)
        size = self.task.image_size
        controls = sketch_images([s[0] for s in sketches], size)
        self._save_sketches(work / "sketches" / "triplets", list(sub["sample_id"]),
                            [s[0] for s in sketches], controls, size)
        t2 = time.perf_counter()
        encode = datasets.Image().encode_example
        sub = sub.remove_columns(["control"]).add_column(
            "control", [encode(c) for c in controls]).cast_column("control", datasets.Image())
        data = build_train_data(self.backbone, sub, self.task,
                                prompt_style=self.resolved["prompt_style"], device=ctx.device,
                                progress=self.progress, control_column="control")
        result = DiffusionTrainer(self.backbone, data, self.train_config(ctx.seed),
                                  work / "diffusion", hooks=self, progress=self.progress).train()
        self.backbone.controlnet = result.controlnet
        self.sample_cache = work / "diffusion"
        self.timings = {"load_base_s": round(t1 - t0, 3), "triplet_sketches_s": round(t2 - t1, 3),
                        "controlnet_train_s": round(time.perf_counter() - t2, 3)}
        log.info("%s: %d triplets, ControlNet trained %d steps (%s)", self.name, len(rows),
                 result.end_step - result.start_step, self.timings)

    # -- conditioning -----------------------------------------------------------------------
    def condition_plan(self, plan: Plan, train: datasets.Dataset) -> Plan:
        """Every planned image tied to a training image of its cell (a cell asked for k
        images sketches ceil(k / ``images_per_source``) of its images), and to one of that
        image's ``sketches_per_image`` similarity-penalised sketches (cycling)."""
        assert self.task is not None
        t0 = time.perf_counter()
        plan = attach_sources(plan, train, self.task, seed=plan.seed,
                              images_per_source=self.resolved["images_per_source"])
        ids = sorted({c.source_id for r in plan.rows for c in r.conditioning})
        if not ids:
            return plan
        at = {sid: i for i, sid in enumerate(list(train["sample_id"]))}
        src = train.select([at[s] for s in ids])
        images = [np.asarray(im.convert("L")) for im in src["image"]]
        cfg = self.sketch_config()
        folder = self.work_dir / "sketches" / "plan" if self.work_dir is not None else None
        sketches = cached_sketches(folder, images, cfg, seed=plan.seed, device=self.device)
        size = self.task.image_size
        flat = [s for sk in sketches for s in sk]
        flat_png = sketch_images(flat, size)
        pngs = {sid: flat_png[i * cfg.n:(i + 1) * cfg.n] for i, sid in enumerate(ids)}
        if folder is not None:
            self._save_sketches(folder,
                                [f"{sid}-{k}" for sid in ids for k in range(cfg.n)],
                                flat, flat_png, size)
        used: dict[str, int] = {}
        rows = []
        for row in plan.rows:
            conds = []
            for c in row.conditioning:
                k = used.get(c.source_id, 0)
                used[c.source_id] = k + 1
                conds.append(replace(c, control=pngs[c.source_id][k % cfg.n]))
            rows.append(replace(row, conditioning=tuple(conds)))
        self.timings["plan_sketches_s"] = round(time.perf_counter() - t0, 3)
        self.sketch_report = {"plan_source_images": len(ids), "sketches_per_image": cfg.n,
                              "sketch_config": cfg.as_dict()}
        self._plan_sources = {sid: (images[i], pngs[sid]) for i, sid in enumerate(ids)}
        return replace(plan, rows=tuple(rows))

    # -- sample -----------------------------------------------------------------------------
    def sample(self, plan: Plan) -> datasets.Dataset:
        if self.backbone is None or self.task is None:
            raise RuntimeError(f"{self.name}: call fit() or load() before sample()")
        from benchmark.diffusion import sample_images

        r = self.resolved
        t0 = time.perf_counter()
        prompts = self.prompts_for(plan)
        controls = [row.conditioning_of(j).control for row in plan.rows
                    for j in range(row.count)]
        if any(c is None for c in controls):
            raise ValueError(f"{self.name}: every planned image needs a sketch; the plan was "
                             "not conditioned (call condition_plan first)")
        pixels = sample_images(self.backbone, prompts, seed=plan.seed, steps=r["sample_steps"],
                               guidance_scale=r["guidance_scale"], sampler=r["sampler"],
                               batch_size=r["sample_batch_size"], device=self.device,
                               cache_dir=self.sample_cache, progress=self.progress,
                               controls=controls or None,
                               conditioning_scale=r["conditioning_scale"],
                               mixed_precision=r["mixed_precision"])
        ds = self.plan_dataset(plan, pixels)
        self.timings["sample_s"] = round(time.perf_counter() - t0, 3)
        if self.work_dir is not None and len(ds):
            self._write_grid(ds, self.work_dir.parent / "sketch_grid.png")
        return ds

    def report(self) -> dict[str, Any]:
        return {"timings_s": self.timings, **self.sketch_report,
                "substitutes": {"saliency": "sobel gradient magnitude x XDoG edges",
                                "fidelity": "blurred-edge MSE (no score distillation)",
                                "high_level": self.resolved.get("high_level")}}

    # -- files ------------------------------------------------------------------------------
    @staticmethod
    def _save_sketches(folder: Path, names: list[str], sketches: list, images: list,
                       size: int) -> None:
        """Each sketch as ``<name>.png`` (its rendering) and ``<name>.svg``, atomically."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, s, im in zip(names, sketches, images, strict=True):
            for ext, write in (("png", lambda p, im=im: im.save(p, format="PNG")),
                               ("svg", lambda p, s=s: p.write_text(s.svg(size)))):
                final = folder / f"{name}.{ext}"
                tmp = final.with_name(f".{final.name}.tmp")
                write(tmp)
                os.replace(tmp, final)

    def _write_grid(self, ds: datasets.Dataset, path: Path, max_rows: int = 8) -> None:
        """image | its sketches | images generated from it, one source image per row."""
        from PIL import Image

        sources = getattr(self, "_plan_sources", {})
        by_source: dict[str, list] = {}
        for sid, img in zip(ds["source_id"], ds["image"], strict=True):
            by_source.setdefault(sid, []).append(img)
        size = self.task.image_size
        picked = [s for s in sorted(by_source) if s in sources][:max_rows]
        if not picked:
            return
        n = max(len(sources[s][1]) for s in picked)
        m = max(len(by_source[s]) for s in picked)
        grid = Image.new("L", ((1 + n + m) * size, len(picked) * size), 255)
        for r, sid in enumerate(picked):
            real, sketches = sources[sid]
            tiles = [Image.fromarray(real), *sketches, *by_source[sid]]
            for c, tile in enumerate(tiles):
                grid.paste(tile.convert("L").resize((size, size)), (c * size, r * size))
        tmp = path.with_name(f".{path.name}.tmp")
        grid.save(tmp, format="PNG")
        os.replace(tmp, path)

    def save(self, directory: str | Path) -> None:
        super().save(directory)
        (Path(directory) / "sketch_timings.json").write_text(json.dumps(self.timings, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> SketchControlNet:
        gen = super().load(directory)
        assert isinstance(gen, SketchControlNet)
        work = Path(directory).parent / "work"
        gen.work_dir = work
        return gen


def cached_sketches(folder: Path | None, images: list[np.ndarray], config: SketchConfig, *,
                    seed: int, device: str) -> list[list[Sketch]]:
    """:func:`extract_sketches`, kept in ``folder/sketches.npz`` under the sha256 of all it
    depends on (the config, the seed, every image's pixels): a resumed run reads them back
    instead of optimising again; another key recomputes and replaces them (atomically)."""
    h = hashlib.sha256(json.dumps({"config": config.as_dict(), "seed": seed},
                                  sort_keys=True).encode())
    for im in images:
        h.update(str(im.shape).encode())
        h.update(np.ascontiguousarray(im).tobytes())
    key = h.hexdigest()
    path = folder / "sketches.npz" if folder is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                if str(z["key"]) == key:
                    log.info("sketches: reusing %d x %d from %s", len(images), config.n, path)
                    return [[Sketch(z["points"][i, k], z["widths"][i, k], z["opacities"][i, k],
                                    int(z["canvas"])) for k in range(config.n)]
                            for i in range(len(images))]
        except (OSError, ValueError, KeyError) as err:
            log.info("sketches: %s unreadable (%s); computing them again", path, err)
    sketches = extract_sketches(images, config, seed=seed, device=device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".sketches.tmp.npz")
        np.savez(tmp, key=np.array(key),
                 points=np.stack([[s.points for s in sk] for sk in sketches]),
                 widths=np.stack([[s.widths for s in sk] for sk in sketches]),
                 opacities=np.stack([[s.opacities for s in sk] for sk in sketches]),
                 canvas=np.array(config.canvas))
        os.replace(tmp, path)
    return sketches
