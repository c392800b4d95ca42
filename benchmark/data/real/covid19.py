"""COVID-19 image data collection (Cohen et al.): chest X-rays of COVID-19 and other pneumonias.

Source: Cohen, Morrison, Dao, Roth, Duong, Ghassemi, "COVID-19 Image Data Collection:
Prospective Predictions Are the Future", MELBA 2020 (https://github.com/ieee8023/covid-chestxray-dataset).
Licence: per image (column ``license``: CC BY, CC BY-NC-SA, Apache 2.0, ...); the metadata is
CC BY-NC-SA 4.0. Layout, encodings, our mapping and known traps: ``data_cards/covid19.md``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import datasets

from ..registry import DatasetSpec, register_dataset
from ._common import (
    DataLayoutError,
    DropCounter,
    cell,
    check_images,
    find_named,
    hash_splits,
    new_rows,
    number,
    read_table,
    require_root,
    to_dataset,
)

log = logging.getLogger("benchmark.data.real")

NAME = "covid19"
CARD = "covid19.md"
HEADER = ("patientid", "offset", "sex", "age", "finding", "view", "modality", "folder",
          "filename")
FRONTAL = ("PA", "AP", "AP Supine", "AP Erect")
SEX = {"M": "male", "F": "female"}
SPLIT_SALT = "covid19"


def map_finding(raw: str | None) -> tuple[str | None, list[str]]:
    """Hierarchical ``finding`` (``Pneumonia/Viral/COVID-19``) -> (schema finding, labels)."""
    if raw is None:
        return None, []
    parts = [p.strip() for p in raw.split("/")]
    if "COVID-19" in parts:
        return "covid_19", ["pneumonia", "covid_19"]
    if parts[0] == "No Finding":
        return "no_finding", ["no_finding"]
    if parts[0] == "Pneumonia":
        return "pneumonia", ["pneumonia"]
    return None, []


def load(*, root: str | os.PathLike | None, image_size: int | None = None,
         n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
         views: Sequence[str] = FRONTAL, check: str = "exists") -> datasets.Dataset:
    """Load a local clone of covid-chestxray-dataset (X-rays only) as standard-schema rows.

    Args:
        root: the repository folder (``metadata.csv`` and ``images/``), or its parent.
        views: ``view`` values to keep (default frontal: PA, AP, AP Supine, AP Erect).
        check: image check at load time (none, exists, decode).

    ``finding``: covid_19 when the hierarchical finding contains COVID-19, pneumonia for any
    other ``Pneumonia/...``, no_finding for ``No Finding``; other findings (Tuberculosis,
    todo, Unknown, ...) are dropped and counted.
    """
    del image_size, n_images, seed, split_salt
    base = require_root(root, NAME, CARD)
    meta = find_named(base, ("metadata.csv",), max_depth=1)
    if meta is None:
        raise FileNotFoundError(f"{NAME}: metadata.csv not found in {base} or its subfolders")
    df = read_table(meta, dataset=NAME, required=HEADER)
    drops = DropCounter(NAME)
    rows = new_rows()
    for i, rec in enumerate(df.to_dict("records")):
        where = f"{meta} row {i + 2}"
        if cell(rec["modality"]) != "X-ray":
            drops.drop("modality not X-ray")
            continue
        if cell(rec["view"]) not in views:
            drops.drop(f"view not in {list(views)}")
            continue
        finding, labels = map_finding(cell(rec["finding"]))
        if finding is None:
            drops.drop(f"finding {cell(rec['finding'])!r} not mapped")
            continue
        pid, name = cell(rec["patientid"]), cell(rec["filename"])
        if pid is None or name is None:
            raise DataLayoutError(f"{where}: empty patientid or filename")
        sex_raw = cell(rec["sex"])
        if sex_raw is not None and sex_raw not in SEX:
            raise DataLayoutError(f"{where}: sex {sex_raw!r}; expected M, F or blank")
        if sex_raw is None:
            drops.unknown_value("sex")
        age = number(rec["age"], where=f"{where} age")
        if age is None:
            drops.unknown_value("age")
        rows["sample_id"].append(name)
        rows["patient_id"].append(pid)
        rows["image"].append(str(meta.parent / (cell(rec["folder"]) or "images") / name))
        rows["finding"].append(finding)
        rows["labels"].append(labels)
        rows["sex"].append(SEX.get(sex_raw) if sex_raw else None)
        rows["age"].append(age)
        rows["source"].append(NAME)
    splits = hash_splits(rows["patient_id"], SPLIT_SALT)
    rows["split"] = [splits[p] for p in rows["patient_id"]]
    check_images(rows["image"], check, dataset=NAME, root=base)
    drops.report(len(df), len(rows["sample_id"]))
    return to_dataset(rows, dataset=NAME, root=base)


register_dataset(
    DatasetSpec(
        name=NAME,
        description="COVID-19 image data collection chest X-rays: COVID-19, other pneumonia, "
        "no finding; sex, age (needs --root)",
        loader=load,
        phantom=False,
        card=CARD,
    )
)
