"""``oversample``: re-draws real training images of each plan cell, with replacement.

The honest floor for any generator: it fills the plan with exact copies of real images from
the same subgroup x class cell, so it adds no new appearance, only weight. A plan cell with
no training image cannot be filled and is an error, except a cell of the task's held-out
groups (an unseen intersection): it is skipped with a warning. Each copy's ``source_id``
names the real image it copies.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import numpy as np

from benchmark import COLUMNS, FEATURES, FitContext, Generator, Plan, Task
from benchmark.schema import column

log = logging.getLogger(__name__)


class Oversample(Generator):
    name = "oversample"
    description = "re-draws real training images of under-represented cells (with replacement)"
    default_config = {}

    def __init__(self, config=None):
        super().__init__(config)
        self._pool: datasets.Dataset | None = None
        self._task: Task | None = None

    def fit(self, train: datasets.Dataset, ctx: FitContext) -> None:
        self._pool = train
        self._task = ctx.task

    def _cells(self) -> dict[tuple, np.ndarray]:
        assert self._pool is not None and self._task is not None
        keys = self._task.cell_keys(self._pool)
        cells: dict[tuple, list[int]] = {}
        for i, key in enumerate(keys):
            cells.setdefault(key, []).append(i)
        return {k: np.asarray(v) for k, v in cells.items()}

    def sample(self, plan: Plan) -> datasets.Dataset:
        if self._pool is None or self._task is None:
            raise RuntimeError("oversample: call fit() or load() before sample()")
        cells = self._cells()
        rng = np.random.default_rng(plan.seed)
        picks: list[int] = []
        for row in plan.rows:
            if row.count == 0:
                continue
            group = tuple(v for _, v in row.group)
            members = cells.get((group, row.finding))
            if members is None and group in self._task.held_out_groups:
                # an unseen intersection (held out of training on purpose): a copy cannot
                # make one; the evaluation reports the held-out cells as not generated
                log.warning("oversample: plan cell %s / %s is a held-out group with no "
                            "training image: its %d images are not made", row.attributes,
                            row.finding, row.count)
                continue
            if members is None:
                raise ValueError(
                    f"oversample: plan cell {row.attributes} / {row.finding} has no training "
                    "image to re-draw"
                )
            picks.extend(rng.choice(members, size=row.count, replace=True).tolist())
        # in memory: a pool loaded from a checkpoint must not get cache files written into it
        drawn = self._pool.select(picks).flatten_indices(keep_in_memory=True)
        n = len(drawn)
        source_ids = column(drawn, "sample_id")  # each copy names the real image it copies
        drawn = drawn.remove_columns(["sample_id", "split", "source", "source_id"])
        drawn = drawn.add_column("sample_id", [f"oversample-{i:06d}" for i in range(n)])
        drawn = drawn.add_column("source_id", source_ids)
        drawn = drawn.add_column("split", ["train"] * n)
        drawn = drawn.add_column("source", ["synthetic:oversample"] * n)
        return drawn.select_columns(list(COLUMNS)).cast(FEATURES)

    def save(self, directory) -> None:
        super().save(directory)
        assert self._pool is not None and self._task is not None
        self._pool.save_to_disk(str(Path(directory) / "pool"))
        (Path(directory) / "task.json").write_text(json.dumps(self._task.as_dict()))

    @classmethod
    def load(cls, directory) -> Oversample:
        gen = super().load(directory)
        assert isinstance(gen, Oversample)
        gen._pool = datasets.load_from_disk(str(Path(directory) / "pool"))
        gen._task = Task.from_dict(json.loads((Path(directory) / "task.json").read_text()))
        return gen
