"""Sample grids: one row per subgroup, one column per class."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import datasets
import numpy as np

from ..schema import ATTRIBUTES
from ..tasks import Task


def cell_examples(ds: datasets.Dataset, task: Task, per_cell: int = 1
                  ) -> dict[tuple[tuple[str | None, ...], str], list[int]]:
    """Row indices of the first ``per_cell`` images of every (subgroup, class) cell."""
    cells: dict[tuple[tuple[str | None, ...], str], list[int]] = {}
    for i, (group, cls) in enumerate(task.cell_keys(ds)):
        if cls is None:
            continue
        members = cells.setdefault((group, cls), [])
        if len(members) < per_cell:
            members.append(i)
    return cells


def sample_grid(ds: datasets.Dataset, task: Task, path: str | Path, *, per_cell: int = 1,
                title: str | None = None) -> Path:
    """Write a PNG grid of ``ds``: rows = subgroups (intersections of the task's sensitive
    attributes, in vocabulary order), columns = the task's classes. Empty cells stay blank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = cell_examples(ds, task, per_cell)
    present = {g for g, _ in cells}
    def vocab_order(attr: str):  # vocabulary order; unknown (None) last
        vocab = ATTRIBUTES[attr]
        return lambda v: (v is None, vocab.index(v) if v in vocab else len(vocab), str(v))

    groups = [g for g in itertools.product(*(sorted({x[k] for x in present},
                                                    key=vocab_order(attr))
                                             for k, attr in enumerate(task.sensitive_attributes)))
              if g in present]
    n_rows, n_cols = len(groups), len(task.classes) * per_cell
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols + 1.2, 1.3 * n_rows + 0.6),
                             squeeze=False)
    for r, group in enumerate(groups):
        for c, cls in enumerate(task.classes):
            idx = cells.get((group, cls), [])
            for k in range(per_cell):
                ax = axes[r][c * per_cell + k]
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if k < len(idx):
                    img = np.asarray(ds[idx[k]]["image"])
                    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
                if r == 0 and k == 0:
                    ax.set_title(cls.replace("_", " "), fontsize=8)
                if c == 0 and k == 0:
                    ax.set_ylabel("\n".join(str(v) for v in group), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=90)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path
