"""Cardiac cine MRI: ACDC (with height and weight -> BMI) and M&Ms (with sex and age).

Sources: Bernard et al., "Deep Learning Techniques for Automatic MRI Cardiac Multi-structures
Segmentation and Diagnosis: Is the Problem Solved?", IEEE TMI 2018 (ACDC,
https://www.creatis.insa-lyon.fr/Challenge/acdc/); Campello et al., "Multi-Centre,
Multi-Vendor and Multi-Disease Cardiac Segmentation: The M&Ms Challenge", IEEE TMI 2021
(https://www.ub.edu/mnms/). Licences: ACDC for research use after registration (CC BY-NC-SA 4.0
on the current Human Heart Project portal); M&Ms CC BY-NC-SA 4.0. Layout, encodings, mapping
and traps: ``data_cards/cardiac.md``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
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
from ._volumes import load_volume, png_cell, to_uint8

log = logging.getLogger("benchmark.data.real")

ACDC_GROUPS = ("NOR", "MINF", "DCM", "HCM", "RV")
#: groups read as heart failure by default: reduced ejection fraction (previous myocardial
#: infarction, dilated cardiomyopathy). HCM and RV rows are dropped (counted) unless listed.
ACDC_HEART_FAILURE = ("DCM", "MINF")
MNMS_TABLES = ("211230_M&Ms_Dataset_information_diagnosis_opendataset.csv",
               "201014_M&Ms_Dataset_Information_-_opendataset.csv",
               "211006_M&Ms_Dataset_Information_-_opendataset.csv")
MNMS_HEADER = ("External code", "VendorName", "Vendor", "Centre", "ED", "ES")
MNMS_HEART_FAILURE = ("DCM",)
SEX = {"M": "male", "F": "female"}


def short_axis_slice(path: Path, *, frame: int | None, position: float,
                     gt: Path | None = None, root: Path | None = None
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 image, uint8 label mask or None) of the short-axis slice at ``position`` of the
    stack (array axis 2) in time ``frame`` (4-D files) or the 3-D volume."""
    def read(p: Path, t: int | None) -> np.ndarray:
        img = load_volume(p, root=root)
        k = int(round(position * (img.shape[2] - 1)))
        sl = (slice(None), slice(None), k) + ((t,) if len(img.shape) == 4 else ())
        try:
            return np.asarray(img.dataobj[sl]).T  # rows: second array axis
        except Exception as err:
            raise DataLayoutError(f"cannot read volume {p} ({type(err).__name__}: "
                                  f"{err})") from None

    image = to_uint8(read(path, frame))
    mask = None
    if gt is not None and gt.is_file():
        labels = read(gt, frame)
        if labels.shape != image.shape:
            raise DataLayoutError(f"{gt}: mask shape {labels.shape} != image {image.shape}")
        mask = labels.astype(np.uint8)
    return image, mask


def parse_info_cfg(path: Path) -> dict[str, str]:
    """ACDC ``Info.cfg``: ``Key: value`` lines (ED, ES, Group, Height, NbFrame, Weight)."""
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    missing = [k for k in ("ED", "Group", "Height", "Weight") if k not in out]
    if missing:
        raise DataLayoutError(f"{path}: missing {', '.join(missing)}; expected lines ED, ES, "
                              f"Group, Height, NbFrame, Weight (found {', '.join(out)})")
    return out


def load_acdc(*, root: str | os.PathLike | None, image_size: int | None = None,
              n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
              heart_failure: Sequence[str] = ACDC_HEART_FAILURE, position: float = 0.5,
              progress: bool = True) -> datasets.Dataset:
    """ACDC: the mid-ventricular short-axis slice at end-diastole of each patient, with its
    segmentation mask (0 background, 1 RV cavity, 2 myocardium, 3 LV cavity) and BMI."""
    del image_size, n_images, seed, split_salt
    name = "acdc"
    bad = [g for g in heart_failure if g not in ACDC_GROUPS]
    if bad:
        raise ValueError(f"{name}: heart_failure groups {bad}; expected from {ACDC_GROUPS}")
    base = require_root(root, name, "cardiac.md")
    cfgs = sorted({p for pat in ("*/Info.cfg", "*/*/Info.cfg", "*/*/*/Info.cfg",
                                 "*/*/*/*/Info.cfg") for p in base.glob(pat)
                   if re.fullmatch(r"patient\d{3}", p.parent.name)})
    if not cfgs:
        raise FileNotFoundError(f"{name}: no patientNNN/Info.cfg under {base} (expected "
                                "database/training/patient001/Info.cfg)")
    drops = DropCounter(name)
    rows = new_rows()
    official = []
    for cfg_path in tqdm(cfgs, desc=name, disable=not progress, leave=False):
        pid = cfg_path.parent.name
        info = parse_info_cfg(cfg_path)
        group = info["Group"]
        if group not in ACDC_GROUPS:
            raise DataLayoutError(f"{cfg_path}: Group {group!r}; expected one of {ACDC_GROUPS}")
        if group == "NOR":
            finding = "no_finding"
        elif group in heart_failure:
            finding = "heart_failure"
        else:
            drops.drop(f"group {group} (neither healthy nor heart failure)")
            continue
        ed = int(float(info["ED"]))
        frame = cfg_path.parent / f"{pid}_frame{ed:02d}.nii.gz"
        if not frame.is_file():
            raise FileNotFoundError(f"{name}: {frame} (the ED frame named in {cfg_path}) is "
                                    "missing")
        image, mask = short_axis_slice(frame, frame=None, position=position,
                                       gt=frame.with_name(f"{pid}_frame{ed:02d}_gt.nii.gz"),
                                       root=base)
        height = number(info["Height"], where=f"{cfg_path} Height")
        weight = number(info["Weight"], where=f"{cfg_path} Weight")
        rows["sample_id"].append(f"{pid}_frame{ed:02d}")
        rows["patient_id"].append(pid)
        rows["image"].append(png_cell(image))
        rows["mask"].append(png_cell(mask) if mask is not None else None)
        rows["finding"].append(finding)
        rows["labels"].append([finding])
        rows["bmi"].append(weight / (height / 100) ** 2 if height and weight else None)
        rows["source"].append(name)
        official.append("test" if "test" in cfg_path.parent.parent.name.lower() else "train")
    hashed = hash_splits(rows["patient_id"], name, fractions={"train": 0.9, "val": 0.1})
    rows["split"] = ["test" if o == "test" else hashed[p]
                     for o, p in zip(official, rows["patient_id"], strict=True)]
    drops.report(len(cfgs), len(rows["sample_id"]))
    return to_dataset(rows, dataset=name, root=base)


def load_mnms(*, root: str | os.PathLike | None, image_size: int | None = None,
              n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
              heart_failure: Sequence[str] = MNMS_HEART_FAILURE, position: float = 0.5,
              progress: bool = True) -> datasets.Dataset:
    """M&Ms-1: the mid-ventricular short-axis slice at end-diastole, with sex, age (and BMI
    where the table has Height and Weight) from the diagnosis table."""
    del image_size, n_images, seed, split_salt
    name = "mnms"
    base = require_root(root, name, "cardiac.md")
    table = find_named(base, MNMS_TABLES, max_depth=2, skip=())
    if table is None:
        raise FileNotFoundError(f"{name}: none of {', '.join(MNMS_TABLES)} under {base}")
    df = read_table(table, dataset=name, required=MNMS_HEADER)
    has_diag = all(c in df.columns for c in ("Pathology", "Sex", "Age"))
    if not has_diag:
        raise DataLayoutError(f"{name}: {table} has no Pathology/Sex/Age columns; use the "
                              f"diagnosis table {MNMS_TABLES[0]} (found {', '.join(df.columns)})")
    images = {}
    for split_dir in ("Training", "Validation", "Testing"):
        for p in sorted((base / split_dir).glob("**/*_sa.nii.gz")):
            images[p.name.removesuffix("_sa.nii.gz")] = (p, split_dir)
    if not images:
        raise FileNotFoundError(f"{name}: no <code>/<code>_sa.nii.gz under {base}/Training, "
                                "Validation or Testing")
    drops = DropCounter(name)
    rows = new_rows()
    official = []
    for i, rec in enumerate(tqdm(df.to_dict("records"), desc=name, disable=not progress,
                                 leave=False)):
        where = f"{table} row {i + 2}"
        code = cell(rec["External code"])
        if code not in images:
            drops.drop("no image in the local copy")
            continue
        pathology = cell(rec["Pathology"]) or ""
        if pathology == "NOR":
            finding = "no_finding"
        elif pathology in heart_failure:
            finding = "heart_failure"
        else:
            drops.drop(f"pathology {pathology or 'blank'} (neither healthy nor heart failure)")
            continue
        sex_raw = cell(rec["Sex"])
        if sex_raw is not None and sex_raw not in SEX:
            raise DataLayoutError(f"{where}: Sex {sex_raw!r}; expected M or F")
        ed = number(rec["ED"], where=f"{where} ED")
        if ed is None:
            raise DataLayoutError(f"{where}: empty ED frame")
        path, split_dir = images[code]  # type: ignore[index]
        image, mask = short_axis_slice(path, frame=int(ed), position=position,
                                       gt=path.with_name(f"{code}_sa_gt.nii.gz"), root=base)
        height = number(rec.get("Height"), where=f"{where} Height") if "Height" in rec else None
        weight = number(rec.get("Weight"), where=f"{where} Weight") if "Weight" in rec else None
        rows["sample_id"].append(f"{code}_ed")
        rows["patient_id"].append(code)  # type: ignore[arg-type]
        rows["image"].append(png_cell(image))
        rows["mask"].append(png_cell(mask) if mask is not None else None)
        rows["finding"].append(finding)
        rows["labels"].append([finding])
        rows["sex"].append(SEX.get(sex_raw) if sex_raw else None)
        rows["age"].append(number(rec["Age"], where=f"{where} Age"))
        rows["bmi"].append(weight / (height / 100) ** 2 if height and weight else None)
        rows["source"].append(name)
        official.append({"Training": "train", "Validation": "val", "Testing": "test"}[split_dir])
    rows["split"] = official
    drops.report(len(df), len(rows["sample_id"]))
    return to_dataset(rows, dataset=name, root=base)


register_dataset(DatasetSpec(
    name="acdc", loader=load_acdc, phantom=False, card="cardiac.md",
    description="ACDC cine MRI, ED mid-ventricular slice + mask, healthy vs heart failure, "
    "BMI from Info.cfg (needs --root)"))
register_dataset(DatasetSpec(
    name="mnms", loader=load_mnms, phantom=False, card="cardiac.md",
    description="M&Ms cine MRI, ED mid-ventricular slice + mask, healthy vs heart failure, "
    "sex, age (needs --root)"))
