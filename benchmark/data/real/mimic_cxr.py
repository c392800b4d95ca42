"""MIMIC-CXR-JPG 2.x chest radiographs with demographics joined from MIMIC-IV.

Source: Johnson et al., MIMIC-CXR-JPG (PhysioNet, v2.0.0 / v2.1.0); MIMIC-IV (PhysioNet,
v1.0 and v2.x) for sex, age and race. Licence: PhysioNet Credentialed Health Data License
1.5.0 (credentialed access, data use agreement, CITI training). Layout, encodings, our mapping
and known traps: ``data_cards/mimic_cxr.md``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from ..registry import DatasetSpec, register_dataset
from ._common import (
    DataLayoutError,
    DropCounter,
    check_images,
    find_named,
    new_rows,
    read_table,
    require_root,
    to_dataset,
)

log = logging.getLogger("benchmark.data.real")

NAME = "mimic-cxr"
CARD = "mimic_cxr.md"

#: Publisher file names (each also accepted decompressed, without ``.gz``).
METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
LABELERS = {"chexpert": "mimic-cxr-2.0.0-chexpert.csv.gz",
            "negbio": "mimic-cxr-2.0.0-negbio.csv.gz"}
SPLIT = "mimic-cxr-2.0.0-split.csv.gz"

METADATA_HEADER = ("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate")
SPLIT_HEADER = ("dicom_id", "study_id", "subject_id", "split")
LABEL_COLUMNS: dict[str, str] = {
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Consolidation": "consolidation",
    "Edema": "edema",
    "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum",
    "Fracture": "fracture",
    "Lung Lesion": "lung_lesion",
    "Lung Opacity": "lung_opacity",
    "No Finding": "no_finding",
    "Pleural Effusion": "pleural_effusion",
    "Pleural Other": "pleural_other",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
    "Support Devices": "support_devices",
}
LABEL_HEADER = ("subject_id", "study_id", *LABEL_COLUMNS)

#: MIMIC-IV tables: v1.0 keeps patients/admissions in ``core/`` and calls the race column
#: ``ethnicity``; v2.x keeps them in ``hosp/`` and calls it ``race``.
PATIENTS_HEADER = ("subject_id", "gender", "anchor_age", "anchor_year")
RACE_COLUMNS = ("race", "ethnicity")

OFFICIAL_SPLITS = {"train": "train", "validate": "val", "test": "test"}
UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")

#: MIMIC-IV race/ethnicity strings -> schema race, by prefix (first match wins). v1.0 has 8
#: values (WHITE, BLACK/AFRICAN AMERICAN, HISPANIC/LATINO, ASIAN, AMERICAN INDIAN/ALASKA
#: NATIVE, OTHER, UNKNOWN, UNABLE TO OBTAIN); v2.x has ~33 finer ones (WHITE - RUSSIAN,
#: ASIAN - CHINESE, HISPANIC/LATINO - PUERTO RICAN, BLACK/CAPE VERDEAN, PORTUGUESE, ...).
RACE_PREFIXES: tuple[tuple[str, str | None], ...] = (
    ("WHITE", "white"),
    ("PORTUGUESE", "white"),
    ("BLACK", "black"),
    ("HISPANIC", "hispanic"),
    ("SOUTH AMERICAN", "hispanic"),
    ("ASIAN", "asian"),
    ("AMERICAN INDIAN", "american_indian_alaska_native"),
    ("NATIVE HAWAIIAN", "native_hawaiian_pacific_islander"),
    ("MULTIPLE RACE", "other"),
    ("OTHER", "other"),
    ("UNKNOWN", None),
    ("UNABLE TO OBTAIN", None),
    ("PATIENT DECLINED", None),
)
#: A subject whose admissions map to different races: "unknown" (default: race None, counted)
#: or "most_frequent" (the most frequent mapped value; a tie is None).
RACE_CONFLICT_POLICIES = ("unknown", "most_frequent")


def map_race(raw: str | None) -> tuple[str | None, bool]:
    """(schema race, whether the string was recognised) of one MIMIC-IV race string."""
    if raw is None:
        return None, True
    text = raw.strip().upper()
    for prefix, race in RACE_PREFIXES:
        if text.startswith(prefix):
            return race, True
    return None, False


def _gz_or_plain(folder: Path, name: str) -> Path | None:
    for candidate in (name, name.removesuffix(".gz")):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def find_cxr_dir(root: Path) -> Path:
    """The MIMIC-CXR-JPG version folder (holding the metadata csv) under ``root``."""
    hit = find_named(root, (METADATA, METADATA.removesuffix(".gz")), max_depth=3)
    if hit is None:
        raise FileNotFoundError(
            f"{NAME}: {METADATA} (or .csv) not found under {root} (searched 3 levels, "
            "e.g. <root>/mimic-cxr-jpg/2.0.0/)")
    return hit.parent


def find_mimic_iv(root: Path) -> Path | None:
    """The MIMIC-IV module folder (``core/`` in v1.0, ``hosp/`` in v2.x) under ``root``."""
    hit = find_named(root, ("patients.csv.gz", "patients.csv"), max_depth=4,
                     parent_names=("core", "hosp"))
    return hit.parent if hit is not None else None


def read_demographics(module: Path, *, race_conflict: str, drops: DropCounter
                      ) -> tuple[dict[str, tuple[str | None, float | None, float | None]],
                                 dict[str, str | None]]:
    """subject -> (sex, anchor_age, anchor_year) and subject -> race from a MIMIC-IV folder."""
    patients_path = _gz_or_plain(module, "patients.csv.gz")
    assert patients_path is not None
    patients = read_table(patients_path, dataset=NAME, required=PATIENTS_HEADER)
    sexes = {"M": "male", "F": "female"}
    bad = sorted(set(patients["gender"].str.strip()) - set(sexes) - {""})
    if bad:
        raise DataLayoutError(f"{NAME}: {patients_path}: gender value(s) {bad}; expected M or F")
    demo = {}
    for sid, g, age, year in zip(patients["subject_id"], patients["gender"],
                                 patients["anchor_age"], patients["anchor_year"], strict=True):
        demo[sid.strip()] = (sexes.get(g.strip()), float(age) if age.strip() else None,
                             float(year) if year.strip() else None)
    adm_path = _gz_or_plain(module, "admissions.csv.gz")
    races: dict[str, str | None] = {}
    if adm_path is None:
        log.warning("%s: no admissions.csv(.gz) in %s: race is unknown for every row", NAME,
                    module)
        return demo, races
    head = pd.read_csv(adm_path, nrows=0)
    column = next((c for c in RACE_COLUMNS if c in head.columns), None)
    if column is None:
        raise DataLayoutError(
            f"{NAME}: unexpected header in {adm_path}: no race column; expected 'race' "
            f"(MIMIC-IV v2.x, hosp/) or 'ethnicity' (v1.0, core/); found {', '.join(head.columns)}")
    adm = read_table(adm_path, dataset=NAME, required=("subject_id", column))
    unrecognised: Counter[str] = Counter()
    per_subject: dict[str, Counter[str]] = {}
    for sid, raw in zip(adm["subject_id"], adm[column], strict=True):
        raw = raw.strip() or None
        race, known = map_race(raw)
        if not known:
            unrecognised[raw] += 1  # type: ignore[index]
        c = per_subject.setdefault(sid.strip(), Counter())
        if race is not None:
            c[race] += 1
    if unrecognised:
        log.warning("%s: %s value(s) not in the documented mapping, set to unknown: %s", NAME,
                    column, dict(unrecognised))
    conflicts = 0
    for sid, c in per_subject.items():
        if not c:
            races[sid] = None
        elif len(c) == 1:
            races[sid] = next(iter(c))
        else:
            conflicts += 1
            top = c.most_common(2)
            races[sid] = (top[0][0] if race_conflict == "most_frequent"
                          and top[0][1] > top[1][1] else None)
    if conflicts:
        log.info("%s: %d subjects have admissions of different races (policy %s)", NAME,
                 conflicts, race_conflict)
        drops.unknown_value(f"subjects with conflicting race ({race_conflict})", conflicts)
    return demo, races


def load(*, root: str | os.PathLike | None, image_size: int | None = None,
         n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
         view_positions: Sequence[str] = ("PA", "AP"), labeler: str = "chexpert",
         uncertain: str = "zeros", race_conflict: str = "unknown",
         mimic_iv: str | os.PathLike | None = None, check: str = "exists",
         ) -> datasets.Dataset:
    """Load a local MIMIC-CXR-JPG copy (+ MIMIC-IV demographics) as standard-schema rows.

    Args:
        root: a folder holding the MIMIC-CXR-JPG version folder (``mimic-cxr-2.0.0-*.csv.gz``
            and ``files/``) and, optionally, MIMIC-IV (searched for ``core/`` or ``hosp/``
            ``patients.csv.gz``), within three or four levels.
        image_size, n_images, seed, split_salt: ignored (native images, official split).
        view_positions: ``ViewPosition`` values to keep (default frontal: PA and AP).
        labeler: ``chexpert`` or ``negbio`` label file.
        uncertain: uncertain (-1) label policy, as for CheXpert: zeros, ones or ignore.
        race_conflict: see :data:`RACE_CONFLICT_POLICIES`.
        mimic_iv: explicit MIMIC-IV module folder (``.../core`` or ``.../hosp``).
        check: image check at load time (none, exists, decode).
    """
    del image_size, n_images, seed, split_salt
    if labeler not in LABELERS:
        raise ValueError(f"{NAME}: labeler={labeler!r}; expected one of {', '.join(LABELERS)}")
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"{NAME}: uncertain={uncertain!r}; expected one of "
                         f"{', '.join(UNCERTAIN_POLICIES)}")
    if race_conflict not in RACE_CONFLICT_POLICIES:
        raise ValueError(f"{NAME}: race_conflict={race_conflict!r}; expected one of "
                         f"{', '.join(RACE_CONFLICT_POLICIES)}")
    base = require_root(root, NAME, CARD)
    cxr = find_cxr_dir(base)
    paths = {}
    for key, name in (("metadata", METADATA), ("labels", LABELERS[labeler]), ("split", SPLIT)):
        p = _gz_or_plain(cxr, name)
        if p is None:
            raise FileNotFoundError(f"{NAME}: {name} (or .csv) is missing in {cxr}")
        paths[key] = p
    drops = DropCounter(NAME)
    meta = read_table(paths["metadata"], dataset=NAME, required=METADATA_HEADER)
    n_in = len(meta)
    meta["ViewPosition"] = meta["ViewPosition"].str.strip()
    keep = meta["ViewPosition"].isin(list(view_positions))
    drops.drop(f"ViewPosition not in {list(view_positions)}", int((~keep).sum()))
    meta = meta[keep]

    split = read_table(paths["split"], dataset=NAME, required=SPLIT_HEADER)
    bad = sorted(set(split["split"].str.strip()) - set(OFFICIAL_SPLITS))
    if bad:
        raise DataLayoutError(f"{NAME}: {paths['split']}: split value(s) {bad}; expected "
                              f"{', '.join(OFFICIAL_SPLITS)}")
    split_of = dict(zip(split["dicom_id"].str.strip(),
                        split["split"].str.strip().map(OFFICIAL_SPLITS), strict=True))
    subj_splits = split.groupby(split["subject_id"].str.strip())["split"].nunique()
    if (subj_splits > 1).any():
        log.warning("%s: %d subjects have images in more than one official split; each image "
                    "keeps its official split", NAME, int((subj_splits > 1).sum()))

    labels_df = read_table(paths["labels"], dataset=NAME, required=LABEL_HEADER)
    label_of = _study_labels(labels_df, paths["labels"], uncertain)

    module = Path(mimic_iv) if mimic_iv is not None else find_mimic_iv(base)
    if module is None or _gz_or_plain(module, "patients.csv.gz") is None:
        log.warning("%s: MIMIC-IV patients.csv(.gz) not found (core/ or hosp/ under %s): sex, "
                    "age and race are unknown for every row", NAME, base)
        demo, races = {}, {}
    else:
        demo, races = read_demographics(module, race_conflict=race_conflict, drops=drops)

    rows = new_rows()
    cxr_prefix = str(cxr)
    for dicom, subject, study, date in zip(meta["dicom_id"].str.strip(),
                                           meta["subject_id"].str.strip(),
                                           meta["study_id"].str.strip(),
                                           meta["StudyDate"].str.strip(), strict=True):
        s = split_of.get(dicom)
        if s is None:
            drops.drop("dicom_id not in the split file")
            continue
        labels, finding, why = label_of.get(study, ([], None, "study not in the label file"))
        if finding is None:
            drops.unknown_value(f"finding ({why})")
        sex, age = None, None
        if subject in demo:
            sex, anchor_age, anchor_year = demo[subject]
            if anchor_age is not None and anchor_year is not None and date:
                age = anchor_age + (int(date[:4]) - anchor_year)
                if age < 0:
                    raise DataLayoutError(f"{NAME}: subject {subject}: StudyDate {date} gives a "
                                          f"negative age ({age})")
        else:
            drops.unknown_value("sex/age (subject not in MIMIC-IV patients)")
        race = races.get(subject)
        if race is None:
            drops.unknown_value("race")
        rows["sample_id"].append(dicom)
        rows["patient_id"].append(subject)
        rows["split"].append(s)
        rows["image"].append(f"{cxr_prefix}/files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg")
        rows["finding"].append(finding)
        rows["labels"].append(labels)
        rows["sex"].append(sex)
        rows["age"].append(age)
        rows["race"].append(race)
        rows["source"].append(NAME)
    check_images(rows["image"], check, dataset=NAME, root=base)
    drops.report(n_in, len(rows["sample_id"]))
    return to_dataset(rows, dataset=NAME, root=base)


def _study_labels(df: pd.DataFrame, path: Path, policy: str
                  ) -> dict[str, tuple[list[str], str | None, str | None]]:
    """study_id -> (labels, finding, why finding is None); same rules as CheXpert's."""
    values = {"1.0": 1, "1": 1, "0.0": 0, "0": 0, "-1.0": -1, "-1": -1, "": 0}
    cells = df[list(LABEL_COLUMNS)].apply(lambda c: c.str.strip())
    codes = np.zeros(cells.shape, dtype=np.int8)
    for j, column in enumerate(LABEL_COLUMNS):
        bad = ~cells[column].isin(list(values))
        if bad.any():
            raise DataLayoutError(f"{NAME}: {path}: {column} {cells[column][bad].iloc[0]!r}; "
                                  "expected 1.0, 0.0, -1.0 or blank")
        codes[:, j] = cells[column].map(values).to_numpy()
    names = np.array(list(LABEL_COLUMNS.values()))
    pathology = ~np.isin(names, ["no_finding", "support_devices"])
    positive = codes == 1
    if policy == "ones":
        positive |= codes == -1
    uncertain = ((codes == -1) & pathology).any(axis=1)
    nf = int(np.flatnonzero(names == "no_finding")[0])
    out = {}
    for k, study in enumerate(df["study_id"].str.strip()):
        pos = names[positive[k]].tolist()
        path_pos = [f for f in pos if f not in ("no_finding", "support_devices")]
        if policy == "ignore" and uncertain[k]:
            out[study] = (pos, None, "an uncertain label (policy ignore)")
        elif len(path_pos) == 1:
            out[study] = (pos, path_pos[0], None)
        elif len(path_pos) > 1:
            out[study] = (pos, None, "several findings")
        elif positive[k, nf]:
            out[study] = (pos, "no_finding", None)
        else:
            out[study] = (pos, None, "no positive label")
    return out


register_dataset(
    DatasetSpec(
        name=NAME,
        description="MIMIC-CXR-JPG 2.x chest X-rays, 14 CheXpert/NegBio findings, official split, "
        "sex/age/race from MIMIC-IV v1.0 or v2.x (needs --root)",
        loader=load,
        phantom=False,
        card=CARD,
    )
)
