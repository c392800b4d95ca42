"""FairGenMed (Harvard-FairGenMed): SLO fundus photos for glaucoma with demographic attributes.

Source: Luo et al., "FairDiffusion: Enhancing Equity in Latent Diffusion Models via Fair
Bayesian Perturbation" (2024), https://github.com/Harvard-Ophthalmology-AI-Lab/FairDiffusion.
Licence: CC BY-NC-ND 4.0 (non-commercial research only). Layout, encodings, mapping and traps:
``data_cards/fairgenmed.md``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from ..registry import DatasetSpec, register_dataset
from ._common import (
    DataLayoutError,
    DropCounter,
    cell,
    find_named,
    hash_splits,
    new_rows,
    number,
    read_table,
    require_root,
    to_dataset,
)
from ._volumes import png_cell, to_uint8

log = logging.getLogger("benchmark.data.real")

NAME = "fairgenmed"
CARD = "fairgenmed.md"
#: npz ``race`` codes (FairDiffusion README): 0 Asian, 1 Black, 2 White; strings accepted.
RACE = {"0": "asian", "1": "black", "2": "white", "asian": "asian", "black": "black",
        "white": "white"}
SPLITS = {"training": "train", "train": "train", "validation": "val", "val": "val",
          "test": "test"}


def _scalar(npz, key: str, where: str) -> str | None:
    if key not in npz:
        return None
    value = npz[key]
    value = value.item() if getattr(value, "shape", None) == () else value
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip().lower()


def load(*, root: str | os.PathLike | None, image_size: int | None = None,
         n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
         progress: bool = True) -> datasets.Dataset:
    """Load a local FairGenMed copy: ``data_summary.csv`` + ``data_XXXXX.npz`` (+ optional
    ``slo_fundus_XXXXX.jpg``) files, in split folders or one folder.

    ``finding`` glaucoma / no_finding from the npz ``glaucoma`` flag; ``race`` from the npz
    ``race`` (int code or string); ``sex`` from ``male``; ``age`` from the summary's ``age``
    column where present; split from its ``use`` column where present, else a patient hash.
    """
    del image_size, n_images, seed, split_salt
    base = require_root(root, NAME, CARD)
    summary = find_named(base, ("data_summary.csv",), max_depth=2)
    if summary is None:
        raise FileNotFoundError(f"{NAME}: data_summary.csv not found under {base}")
    df = read_table(summary, dataset=NAME, required=("filename",))
    files: dict[str, Path] = {}
    for folder in [summary.parent, *sorted(p for p in summary.parent.iterdir() if p.is_dir())]:
        for p in folder.glob("*.npz"):
            files.setdefault(p.name, p)
    drops = DropCounter(NAME)
    rows = new_rows()
    official: list[str | None] = []
    for i, rec in enumerate(tqdm(df.to_dict("records"), desc=NAME, disable=not progress,
                                 leave=False)):
        where = f"{summary} row {i + 2}"
        name = cell(rec["filename"])
        if name is None:
            raise DataLayoutError(f"{where}: empty filename")
        path = files.get(name if name.endswith(".npz") else f"{name}.npz")
        if path is None:
            raise FileNotFoundError(f"{NAME}: {where}: {name} not found next to {summary}")
        try:
            npz = np.load(path, allow_pickle=False)
        except Exception as err:
            raise DataLayoutError(f"cannot read {path} ({type(err).__name__}: {err})") from None
        with npz:
            glaucoma = _scalar(npz, "glaucoma", str(path))
            race_raw = _scalar(npz, "race", str(path))
            male = _scalar(npz, "male", str(path))
            jpg = path.with_name(path.stem.replace("data_", "slo_fundus_") + ".jpg")
            if jpg.is_file():
                image: object = str(jpg)
            elif "slo_fundus" in npz:
                arr = np.asarray(npz["slo_fundus"])
                arr = arr if arr.dtype == np.uint8 else to_uint8(arr, low=0.0, high=100.0)
                image = png_cell(arr)
            else:
                raise DataLayoutError(f"{path}: no slo_fundus array and no {jpg.name}")
        if glaucoma not in ("0", "1", "0.0", "1.0"):
            raise DataLayoutError(f"{path}: glaucoma {glaucoma!r}; expected 0 or 1")
        finding = "glaucoma" if glaucoma.startswith("1") else "no_finding"
        race = RACE.get((race_raw or "").removesuffix(".0")) if race_raw is not None else None
        if race_raw is not None and race is None:
            raise DataLayoutError(f"{path}: race {race_raw!r}; expected 0/1/2 or asian/black/white")
        if male not in (None, "0", "1", "0.0", "1.0"):
            raise DataLayoutError(f"{path}: male {male!r}; expected 0 or 1")
        use = cell(rec.get("use")) if "use" in df.columns else None
        if use is not None and use.lower() not in SPLITS:
            raise DataLayoutError(f"{where}: use {use!r}; expected training, validation or test")
        official.append(SPLITS[use.lower()] if use else None)
        rows["sample_id"].append(path.stem)
        rows["patient_id"].append(path.stem)
        rows["image"].append(image)
        rows["finding"].append(finding)
        rows["labels"].append([finding])
        rows["sex"].append(None if male is None else ("male" if male.startswith("1")
                                                      else "female"))
        rows["age"].append(number(rec.get("age"), where=f"{where} age")
                           if "age" in df.columns else None)
        rows["race"].append(race)
        rows["source"].append(NAME)
    if all(s is not None for s in official) and official:
        rows["split"] = official
        log.info("%s: official split from the 'use' column of %s", NAME, summary.name)
    else:
        splits = hash_splits(rows["patient_id"], NAME)
        rows["split"] = [splits[p] for p in rows["patient_id"]]
    drops.report(len(df), len(rows["sample_id"]))
    return to_dataset(rows, dataset=NAME, root=base)


register_dataset(DatasetSpec(
    name=NAME, loader=load, phantom=False, card=CARD,
    description="FairGenMed SLO fundus photos, glaucoma vs not, race (asian/black/white), sex, "
    "age (needs --root)"))
