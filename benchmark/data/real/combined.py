"""Datasets made of several registered datasets under one root: the mechanism behind FairGen's
combined chest task (CheXpert + COVID-19 image data collection).

A :class:`benchmark.tasks.Task` names one dataset; a combined dataset is registered like any
other, so tasks stay single-dataset. Its root holds one subfolder per part (found among each
part's usual folder names); each part keeps its own split, and ``sample_id`` / ``patient_id``
are prefixed with the part's name so ids from different sources never collide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import datasets

from ..registry import DATASETS, DatasetSpec, register_dataset
from ._common import require_root


def combined_loader(name: str, parts: Sequence[tuple[str, Sequence[str]]],
                    card: str) -> Callable[..., datasets.Dataset]:
    """A loader concatenating the registered datasets ``parts`` = [(dataset, subfolder
    candidates), ...]; options are not forwarded (each part loads with its defaults)."""

    def load(*, root: str | os.PathLike | None, image_size: int | None = None,
             n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
             check: str = "exists") -> datasets.Dataset:
        base = require_root(root, name, card)
        loaded = []
        for part, candidates in parts:
            folder = next((base / c for c in candidates if (base / c).is_dir()), None)
            if folder is None:
                raise FileNotFoundError(
                    f"{name}: no folder for part {part!r} under {base}; expected one of "
                    f"{', '.join(candidates)}")
            ds = DATASETS.get(part).loader(root=folder, image_size=image_size,
                                           n_images=n_images, seed=seed, split_salt=split_salt,
                                           check=check)

            def prefix(sample_ids: list, patient_ids: list, _p: str = part) -> dict:
                return {"sample_id": [f"{_p}:{s}" for s in sample_ids],
                        "patient_id": [f"{_p}:{s}" for s in patient_ids]}

            # input_columns: only the id columns reach the function (no image is decoded)
            loaded.append(ds.map(prefix, batched=True, input_columns=["sample_id",
                                                                      "patient_id"]))
        return datasets.concatenate_datasets(loaded)

    load.__doc__ = (f"Load ``{name}``: " + " + ".join(p for p, _ in parts)
                    + " from one root with a subfolder per part (see data_cards/" + card + ").")
    return load


CHEXPERT_FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0", "chexpert", "CheXpert")
COVID_FOLDERS = ("covid-chestxray-dataset", "covid19", "covid-19")

register_dataset(
    DatasetSpec(
        name="chexpert-covid19",
        description="CheXpert + COVID-19 image data collection combined (FairGen's chest "
        "setting; one root with a folder per part)",
        loader=combined_loader("chexpert-covid19", [("chexpert", CHEXPERT_FOLDERS),
                                                    ("covid19", COVID_FOLDERS)],
                               "covid19.md"),
        phantom=False,
        card="covid19.md",
    )
)

__all__ = ["combined_loader"]
