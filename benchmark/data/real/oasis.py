"""OASIS-1 (cross-sectional) and OASIS-2 (longitudinal) T1 brain MRI, one 2-D slice per session.

Source: Marcus et al., "Open Access Series of Imaging Studies (OASIS): Cross-sectional MRI
Data in Young, Middle Aged, Nondemented, and Demented Older Adults", J Cogn Neurosci 2007;
Marcus et al., "... Longitudinal MRI Data in Nondemented and Demented Older Adults", 2010
(https://sites.wustl.edu/oasisbrains/). Licence: OASIS Data Use Agreement (free registration;
no redistribution; cite the papers). Layout, encodings, our mapping and known traps:
``data_cards/oasis.md``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import datasets
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
from ._volumes import png_cell, volume_slice

log = logging.getLogger("benchmark.data.real")

MISSING = ("N/A", "NA", "n/a", "nan")
SEX = {"M": "male", "F": "female"}

OASIS1_HEADER = ("ID", "M/F", "Hand", "Age", "Educ", "SES", "MMSE", "CDR", "eTIV", "nWBV",
                 "ASF", "Delay")
OASIS1_TABLES = ("oasis_cross-sectional.csv", "oasis_cross-sectional.xlsx",
                 "oasis_cross_sectional.csv", "oasis_cross_sectional.xlsx")
#: T88_111 atlas-registered, bias-field corrected (gfc) images; "masked" = brain-masked. The
#: ``mpr_n<k>`` part (number of averaged scans: n3, n4, ...) varies, hence the glob.
OASIS1_IMAGE = "{id}/PROCESSED/MPRAGE/T88_111/{id}_mpr_n*_anon_111_t88_{kind}.hdr"
OASIS1_KINDS = ("masked_gfc", "gfc")

OASIS2_HEADER = ("Subject ID", "MRI ID", "Group", "Visit", "MR Delay", "M/F", "Hand", "Age",
                 "EDUC", "SES", "MMSE", "CDR", "eTIV", "nWBV", "ASF")
OASIS2_TABLES = ("oasis_longitudinal.csv", "oasis_longitudinal_demographics.xlsx",
                 "oasis_longitudinal.xlsx", "oasis_longitudinal_demographics.csv")
#: raw MPRAGE scans (NIfTI-1 pairs named .nifti.hdr/.img); ``scan`` picks mpr-1, mpr-2, ...
OASIS2_IMAGE = "{id}/RAW/mpr-{scan}.nifti.hdr"

#: what a blank CDR means: "none" (default: finding None, the row leaves CDR-based tasks;
#: OASIS-1's subjects under 60 were not rated) or "nondemented" (finding no_finding).
MISSING_CDR = ("none", "nondemented")


def _find_table(root: Path, names: Sequence[str], dataset: str) -> Path:
    hit = find_named(root, names, max_depth=2, skip=("RAW", "PROCESSED", "FSL_SEG"))
    if hit is None:
        raise FileNotFoundError(f"{dataset}: metadata table not found under {root}; looked for "
                                f"{', '.join(names)} (up to 2 levels down)")
    return hit


def _session_dirs(root: Path, pattern: re.Pattern[str]) -> dict[str, Path]:
    """Session id -> folder, for session folders up to three levels below ``root``
    (``disc1/OAS1_0001_MR1``, ``oasis_cross-sectional_disc1/disc1/...``,
    ``OAS2_RAW_PART1/OAS2_0001_MR1``)."""
    out: dict[str, Path] = {}
    level = [root]
    for _ in range(4):
        nxt = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if not e.is_dir():
                    continue
                if pattern.fullmatch(e.name):
                    out.setdefault(e.name, Path(e.path))
                else:
                    nxt.append(Path(e.path))
        level = nxt
    return out


def _cdr_finding(cdr: float | None, missing_cdr: str) -> str | None:
    if cdr is None:
        return "no_finding" if missing_cdr == "nondemented" else None
    return "dementia" if cdr > 0 else "no_finding"


def _check_common(missing_cdr: str, plane: str) -> None:
    if missing_cdr not in MISSING_CDR:
        raise ValueError(f"missing_cdr={missing_cdr!r}; expected one of {', '.join(MISSING_CDR)}")
    if plane not in ("axial", "coronal", "sagittal"):
        raise ValueError(f"plane={plane!r}; expected axial, coronal or sagittal")


def load_oasis1(*, root: str | os.PathLike | None, image_size: int | None = None,
                n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
                image: str = "masked_gfc", plane: str = "axial", position: float = 0.5,
                slice_index: int | None = None, rescans: bool = False,
                missing_cdr: str = "none", missing_images: str = "error",
                progress: bool = True) -> datasets.Dataset:
    """Load a local OASIS-1 copy: one 2-D slice of each session's T88_111 image.

    Args:
        root: folder holding the metadata table (``oasis_cross-sectional.csv`` or ``.xlsx``,
            up to two levels down) and the ``disc*/`` folders.
        image_size, n_images, seed, split_salt: ignored (native slices; split by subject hash
            with the dataset's fixed salt, see the card).
        image: ``masked_gfc`` (default, brain-masked) or ``gfc``.
        plane, position, slice_index: the slice: anatomical plane (from the image's affine),
            position along its axis as a fraction (0.5 = middle), or an explicit index.
        rescans: keep the ``_MR2`` reliability rescans (default: dropped, counted).
        missing_cdr: see :data:`MISSING_CDR`.
        missing_images: ``error`` (default) or ``drop`` (counted) for sessions with no image.
    """
    del image_size, n_images, seed, split_salt
    name = "oasis1"
    _check_common(missing_cdr, plane)
    if image not in OASIS1_KINDS:
        raise ValueError(f"{name}: image={image!r}; expected one of {', '.join(OASIS1_KINDS)}")
    base = require_root(root, name, "oasis.md")
    table_path = _find_table(base, OASIS1_TABLES, name)
    df = read_table(table_path, dataset=name, required=OASIS1_HEADER)
    sessions = _session_dirs(base, re.compile(r"OAS1_\d{4}_MR\d+"))
    drops = DropCounter(name)
    rows = new_rows()
    for i, rec in enumerate(tqdm(df.to_dict("records"), desc=name, disable=not progress,
                                 leave=False)):
        where = f"{table_path} row {i + 2}"
        sid = cell(rec["ID"])
        m = re.fullmatch(r"(OAS1_\d{4})_MR(\d+)", sid or "")
        if m is None:
            raise DataLayoutError(f"{where}: ID {sid!r} is not OAS1_NNNN_MRk")
        if m.group(2) != "1" and not rescans:
            drops.drop("reliability rescan (_MR2)")
            continue
        folder = sessions.get(sid)
        hits = sorted(folder.parent.glob(OASIS1_IMAGE.format(id=sid, kind=image))) if folder \
            else []
        if not hits:
            if missing_images == "drop":
                drops.drop("no image in the local copy")
                continue
            raise FileNotFoundError(
                f"{name}: {where}: no image for {sid} (expected disc*/"
                f"{OASIS1_IMAGE.format(id=sid, kind=image)})")
        sex_raw = cell(rec["M/F"], MISSING)
        if sex_raw is not None and sex_raw not in SEX:
            raise DataLayoutError(f"{where}: M/F {sex_raw!r}; expected M or F")
        cdr = number(rec["CDR"], where=f"{where} CDR", missing=MISSING)
        finding = _cdr_finding(cdr, missing_cdr)
        if finding is None:
            drops.unknown_value("finding (CDR blank)")
        age = number(rec["Age"], where=f"{where} Age", missing=MISSING)
        rows["sample_id"].append(sid)
        rows["patient_id"].append(m.group(1))
        rows["image"].append(png_cell(volume_slice(hits[0], plane=plane, position=position,
                                                   index=slice_index, root=base)))
        rows["finding"].append(finding)
        rows["labels"].append([finding] if finding else [])
        rows["sex"].append(SEX.get(sex_raw) if sex_raw else None)
        rows["age"].append(age)
        rows["source"].append(name)
    splits = hash_splits(rows["patient_id"], "oasis1")
    rows["split"] = [splits[p] for p in rows["patient_id"]]
    drops.report(len(df), len(rows["sample_id"]))
    return to_dataset(rows, dataset=name, root=base)


def load_oasis2(*, root: str | os.PathLike | None, image_size: int | None = None,
                n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
                scan: int = 1, plane: str = "axial", position: float = 0.5,
                slice_index: int | None = None, missing_cdr: str = "none",
                missing_images: str = "error", progress: bool = True) -> datasets.Dataset:
    """Load a local OASIS-2 copy: one 2-D slice of each visit's raw MPRAGE scan.

    Args:
        root: folder holding the metadata table (``oasis_longitudinal.csv`` or the
            ``oasis_longitudinal_demographics.xlsx``) and the ``OAS2_RAW_PART*/`` folders.
        scan: which raw MPRAGE of the visit (``mpr-<scan>``; 1 by default).
        plane, position, slice_index, missing_cdr, missing_images: as for OASIS-1.
    """
    del image_size, n_images, seed, split_salt
    name = "oasis2"
    _check_common(missing_cdr, plane)
    base = require_root(root, name, "oasis.md")
    table_path = _find_table(base, OASIS2_TABLES, name)
    df = read_table(table_path, dataset=name, required=OASIS2_HEADER)
    sessions = _session_dirs(base, re.compile(r"OAS2_\d{4}_MR\d+"))
    drops = DropCounter(name)
    rows = new_rows()
    for i, rec in enumerate(tqdm(df.to_dict("records"), desc=name, disable=not progress,
                                 leave=False)):
        where = f"{table_path} row {i + 2}"
        mri, subject = cell(rec["MRI ID"]), cell(rec["Subject ID"])
        if mri is None or subject is None or not mri.startswith(subject):
            raise DataLayoutError(f"{where}: MRI ID {mri!r} does not belong to Subject ID "
                                  f"{subject!r}")
        folder = sessions.get(mri)
        img_path = folder.parent / OASIS2_IMAGE.format(id=mri, scan=scan) if folder else None
        if img_path is None or not img_path.is_file():
            if missing_images == "drop":
                drops.drop("no image in the local copy")
                continue
            raise FileNotFoundError(f"{name}: {where}: no image for {mri} (expected "
                                    f"OAS2_RAW_PART*/{OASIS2_IMAGE.format(id=mri, scan=scan)})")
        sex_raw = cell(rec["M/F"], MISSING)
        if sex_raw is not None and sex_raw not in SEX:
            raise DataLayoutError(f"{where}: M/F {sex_raw!r}; expected M or F")
        cdr = number(rec["CDR"], where=f"{where} CDR", missing=MISSING)
        finding = _cdr_finding(cdr, missing_cdr)
        if finding is None:
            drops.unknown_value("finding (CDR blank)")
        rows["sample_id"].append(mri)
        rows["patient_id"].append(subject)
        rows["image"].append(png_cell(volume_slice(img_path, plane=plane, position=position,
                                                   index=slice_index, root=base)))
        rows["finding"].append(finding)
        rows["labels"].append([finding] if finding else [])
        rows["sex"].append(SEX.get(sex_raw) if sex_raw else None)
        rows["age"].append(number(rec["Age"], where=f"{where} Age", missing=MISSING))
        rows["source"].append(name)
    splits = hash_splits(rows["patient_id"], "oasis2")
    rows["split"] = [splits[p] for p in rows["patient_id"]]
    drops.report(len(df), len(rows["sample_id"]))
    return to_dataset(rows, dataset=name, root=base)


register_dataset(
    DatasetSpec(
        name="oasis1",
        description="OASIS-1 cross-sectional T1 MRI (T88_111), one axial slice per subject, "
        "dementia = CDR > 0, sex, age (needs --root)",
        loader=load_oasis1,
        phantom=False,
        card="oasis.md",
    )
)
register_dataset(
    DatasetSpec(
        name="oasis2",
        description="OASIS-2 longitudinal raw T1 MRI, one axial slice per visit, dementia = "
        "CDR > 0, sex, age (needs --root)",
        loader=load_oasis2,
        phantom=False,
        card="oasis.md",
    )
)
