"""Planted-bias DIAGNOSTIC generators: not methods, but known-bad (and one ideal) generators
that check the benchmark itself.

They work only on phantom tasks: they draw images straight from the phantom's generative
model (its ground truth), then plant one known defect. A benchmark whose metrics do not move
the right way against them cannot be trusted (``tests/test_validity.py``).

=========================  ===================================================================
``phantom-oracle``         the ideal generator: fresh phantom images of every requested cell
``erase-minority-phenotype`` fresh images of the requested cells, but every image drawn with
                           the majority subgroup's appearance of its finding (the phantom's
                           ``majority_phenotype``): a generator that learnt only the majority
``drop-subgroup``          one subgroup (option ``group``, default the smallest in training)
                           is never generated; its budget goes to the other cells
``mode-collapse``          one image per class, repeated for every request of that class
``noisy``                  fresh images of the requested cells plus additive Gaussian noise
                           (option ``sigma`` on the 0..1 intensity scale)
=========================  ===================================================================

Every generated row carries the requested finding and subgroup; the other attributes are
the phantom's truth of the drawn image (``mode-collapse`` rows carry only the request).
Fresh draws use seeds of the stream ``diagnostic`` (``plan.seed``, cell), independent of the
benchmark's real phantom data and shared by all diagnostics: for the same plan they draw the
same patients, so each differs from ``phantom-oracle`` only by its planted defect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from benchmark import COLUMNS, FEATURES, FitContext, Generator, Plan, PlanRow, Task
from benchmark.oracle import PhantomSpec, draw_cell_params, phantom_spec, stream_seed
from benchmark.schema import DERIVED, derive_attributes, fill_optional

log = logging.getLogger(__name__)


def _png(array: np.ndarray) -> dict[str, object]:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return {"bytes": buf.getvalue(), "path": None}


class PhantomDiagnostic(Generator):
    """Base of the diagnostics: nothing to train; :meth:`sample` draws from the phantom.

    Subclasses override :meth:`_cell_params` (what to draw for a plan row), :meth:`_image`
    (what to do to a rendered image) or :meth:`sample` itself.
    """

    default_config: dict[str, Any] = {}

    def __init__(self, config=None):
        super().__init__(config)
        self._task: Task | None = None
        self._spec: PhantomSpec | None = None

    # -- protocol

    def fit(self, train: datasets.Dataset, ctx: FitContext) -> None:
        self._set_task(ctx.task)
        log.info("%s: a planted-bias diagnostic; nothing to train", self.name)

    def save(self, directory) -> None:
        super().save(directory)
        if self._task is None:
            raise RuntimeError(f"{self.name}: call fit() before save()")
        (Path(directory) / "task.json").write_text(json.dumps(self._task.as_dict()))

    @classmethod
    def load(cls, directory) -> PhantomDiagnostic:
        gen = super().load(directory)
        assert isinstance(gen, PhantomDiagnostic)
        gen._set_task(Task.from_dict(json.loads((Path(directory) / "task.json").read_text())))
        return gen

    def sample(self, plan: Plan) -> datasets.Dataset:
        task, spec = self._ready(plan)
        images, metas = [], []
        for index, row in enumerate(plan.rows):
            if row.count <= 0:
                continue
            for k, p in enumerate(self._cell_params(spec, row, plan.seed, index)):
                img = self._image(spec.render(p, task.image_size),
                                  stream_seed("diagnostic-image", self.name, plan.seed, index, k))
                images.append(img)
                metas.append(self._meta(spec, row, p))
        return self._rows(images, metas)

    # -- helpers

    def _set_task(self, task: Task) -> None:
        self._spec = phantom_spec(
            task.dataset,
            who=f"{self.name!r} (a planted-bias diagnostic generator) on task {task.name!r}")
        if self._spec.channels != task.channels:
            raise ValueError(f"{self.name}: task {task.name!r} has {task.channels} channel(s) but "
                             f"{task.dataset} images have {self._spec.channels}")
        self._task = task

    def _ready(self, plan: Plan) -> tuple[Task, PhantomSpec]:
        if self._task is None or self._spec is None:
            raise RuntimeError(f"{self.name}: call fit() or load() before sample()")
        if plan.task != self._task.name:
            raise ValueError(f"{self.name}: the plan is for task {plan.task!r}, the generator "
                             f"was fitted on {self._task.name!r}")
        return self._task, self._spec

    @staticmethod
    def cell_of(row: PlanRow) -> dict[str, str | None]:
        return {**row.attributes, "finding": row.finding}

    def _draw(self, spec: PhantomSpec, row: PlanRow, n: int, seed: int, index: int
              ) -> list[Any]:
        # one stream for every diagnostic: for the same plan they draw the same patients, so
        # each differs from the ideal phantom-oracle only by its planted defect
        return draw_cell_params(spec, n, self.cell_of(row), seed=stream_seed(
            "diagnostic", seed, row.finding, *row.group))

    def _cell_params(self, spec: PhantomSpec, row: PlanRow, seed: int, index: int) -> list[Any]:
        return self._draw(spec, row, row.count, seed, index)

    def _image(self, image: np.ndarray, seed: int) -> np.ndarray:
        return image

    def _meta(self, spec: PhantomSpec, row: PlanRow, params: Any) -> dict[str, Any]:
        """The drawn image's true attributes, with the request on top. An attribute requested
        as unknown (``None``) is unknown in the row, together with what derives from it or
        what it derives from."""
        values = spec.base_row(params)
        for attr, value in row.attributes.items():
            values[attr] = value
            if value is None:
                for col, (base, _) in DERIVED.items():
                    if attr in (base, col):
                        values[base] = None
                        values.update({c: None for c, (b, _) in DERIVED.items() if b == base})
        values["finding"] = row.finding
        return values

    def _rows(self, images: Sequence[np.ndarray], metas: Sequence[dict[str, Any]]
              ) -> datasets.Dataset:
        cols: dict[str, list] = {c: [] for c in COLUMNS}
        for i, (img, meta) in enumerate(zip(images, metas, strict=True)):
            meta = {**meta, **derive_attributes(meta)}
            cols["sample_id"].append(f"{self.name}-{i:06d}")
            cols["patient_id"].append(f"{self.name}-p{i:06d}")
            cols["split"].append("train")
            cols["image"].append(_png(img))
            cols["labels"].append([meta["finding"]])
            cols["mask"].append(None)
            cols["source"].append(f"synthetic:{self.name}")
            for c in ("finding", "sex", "age", "age_group", "age_band", "race", "skin_tone",
                      "skin_tone_group", "bmi", "bmi_class"):
                cols[c].append(meta.get(c))
        return datasets.Dataset.from_dict(fill_optional(cols), features=FEATURES)


class PhantomOracleGenerator(PhantomDiagnostic):
    name = "phantom-oracle"
    description = ("DIAGNOSTIC (phantom tasks only): the ideal generator, fresh phantom images "
                   "of every requested cell")


class EraseMinorityPhenotype(PhantomDiagnostic):
    name = "erase-minority-phenotype"
    description = ("DIAGNOSTIC (phantom tasks only): requested cells drawn with the majority "
                   "subgroup's appearance of each finding")

    def _cell_params(self, spec, row, seed, index):
        drawn = self._draw(spec, row, row.count, seed, index)
        out = [spec.majority_phenotype(p) for p in drawn]
        changed = sum(a.phenotype != b.phenotype for a, b in zip(drawn, out, strict=True))
        if changed:
            log.info("%s: %s / %s: %d of %d images drawn with the majority phenotype",
                     self.name, row.attributes, row.finding, changed, len(out))
        return out


class DropSubgroup(PhantomDiagnostic):
    name = "drop-subgroup"
    description = ("DIAGNOSTIC (phantom tasks only): one subgroup is never generated; its "
                   "budget goes to the other cells")
    default_config = {"attribute": None, "group": None}
    option_types = {"attribute": str, "group": str}

    def fit(self, train: datasets.Dataset, ctx: FitContext) -> None:
        super().fit(train, ctx)
        task = ctx.task
        attr = self.config["attribute"] or task.sensitive_attributes[0]
        if attr not in task.sensitive_attributes:
            raise ValueError(f"{self.name}: attribute {attr!r} is not a sensitive attribute of "
                             f"task {task.name!r} ({', '.join(task.sensitive_attributes)})")
        if self.config["group"] is None:
            if attr not in train.column_names:
                raise ValueError(f"{self.name}: the training data has no {attr!r} column to "
                                 "find the smallest subgroup in; set the option 'group'")
            counts: dict[str, int] = {}
            for v in train[attr]:
                if v is not None:
                    counts[v] = counts.get(v, 0) + 1
            if not counts:
                raise ValueError(f"{self.name}: no training row has a {attr} value")
            group = min(sorted(counts), key=lambda g: counts[g])
            log.info("%s: dropping the smallest %s subgroup %r (%d training images)",
                     self.name, attr, group, counts[group])
        else:
            group = self.config["group"]
        self.config = {**self.config, "attribute": attr, "group": group}

    def redistribute(self, plan: Plan) -> Plan:
        """The plan with the dropped subgroup's counts given to the other cells, in proportion
        to their counts (largest remainders; evenly when they all ask for none)."""
        attr, group = self.config["attribute"], self.config["group"]
        if attr is None or group is None:
            raise RuntimeError(f"{self.name}: call fit() or load() before sample()")
        dropped = [r.attributes.get(attr) == group for r in plan.rows]
        freed = sum(r.count for r, d in zip(plan.rows, dropped, strict=True) if d)
        keep = [i for i, d in enumerate(dropped) if not d]
        if not keep:
            raise ValueError(f"{self.name}: every plan cell is in the dropped subgroup "
                             f"{attr}={group!r}")
        weights = np.array([plan.rows[i].count for i in keep], float)
        if weights.sum() == 0:
            weights[:] = 1.0
        raw = freed * weights / weights.sum()
        extra = np.floor(raw).astype(int)
        for j in np.argsort(-(raw - extra), kind="stable")[: freed - int(extra.sum())]:
            extra[j] += 1
        counts = [0] * len(plan.rows)
        for j, i in enumerate(keep):
            counts[i] = plan.rows[i].count + int(extra[j])
        rows = tuple(replace(r, count=c) for r, c in zip(plan.rows, counts, strict=True))
        log.info("%s: %d images of %s=%r given to the other cells", self.name, freed, attr, group)
        return replace(plan, rows=rows)

    def sample(self, plan: Plan) -> datasets.Dataset:
        return super().sample(self.redistribute(plan))


class ModeCollapse(PhantomDiagnostic):
    name = "mode-collapse"
    description = ("DIAGNOSTIC (phantom tasks only): one image per class, repeated for every "
                   "request of that class")

    def sample(self, plan: Plan) -> datasets.Dataset:
        task, spec = self._ready(plan)
        # the one image of each class: drawn from the class's largest plan cell
        best: dict[str, tuple[int, int]] = {}
        for index, row in enumerate(plan.rows):
            if row.count > best.get(row.finding, (-1, -1))[0]:
                best[row.finding] = (row.count, index)
        single: dict[str, np.ndarray] = {}
        for finding, (_, index) in sorted(best.items()):
            p = self._draw(spec, plan.rows[index], 1, plan.seed, index)[0]
            single[finding] = spec.render(p, task.image_size)
        images, metas = [], []
        for row in plan.rows:
            for _ in range(row.count):
                images.append(single[row.finding])
                metas.append({**row.attributes, "finding": row.finding})
        return self._rows(images, metas)


class Noisy(PhantomDiagnostic):
    name = "noisy"
    description = ("DIAGNOSTIC (phantom tasks only): fresh phantom images of the requested "
                   "cells plus additive Gaussian noise (option sigma)")
    default_config = {"sigma": 0.1}

    def __init__(self, config=None):
        super().__init__(config)
        sigma = self.config["sigma"]
        if not isinstance(sigma, int | float) or not np.isfinite(sigma) or sigma < 0:
            raise ValueError(f"{self.name}: sigma must be a number >= 0 (noise std on the 0..1 "
                             f"intensity scale), got {sigma!r}")

    def _image(self, image: np.ndarray, seed: int) -> np.ndarray:
        """x + sigma * N(0, 1) on the 0..1 scale, clipped, back to uint8 (rounded)."""
        x = image.astype(np.float64) / 255.0
        x += float(self.config["sigma"]) * np.random.default_rng(seed).standard_normal(x.shape)
        return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


DIAGNOSTICS: dict[str, Callable[..., Generator]] = {
    cls.name: cls for cls in (PhantomOracleGenerator, EraseMinorityPhenotype, DropSubgroup,
                              ModeCollapse, Noisy)
}

__all__ = [
    "DIAGNOSTICS",
    "DropSubgroup",
    "EraseMinorityPhenotype",
    "ModeCollapse",
    "Noisy",
    "PhantomDiagnostic",
    "PhantomOracleGenerator",
]
