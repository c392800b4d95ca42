"""CheXpert v1.0 (Stanford AIMI): chest radiographs with 14 CheXpert-labeller observations.

Source: Irvin et al., "CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and
Expert Comparison", AAAI 2019. Licence: Stanford University School of Medicine CheXpert
Dataset Research Use Agreement (registration required). Race from the separately distributed
``CHEXPERT DEMO.xlsx`` (Stanford AIMI "CheXpert demographic data").
Layout, encodings, our mapping and known traps: ``data_cards/chexpert.md``.
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
    apply_split_file,
    cell,
    check_images,
    find_file,
    hash_splits,
    load_split_file,
    new_rows,
    read_table,
    require_root,
    to_dataset,
)

log = logging.getLogger("benchmark.data.real")

NAME = "chexpert"
CARD = "chexpert.md"
PREFIXES: tuple[str, ...] = ("CheXpert-v1.0-small", "CheXpert-v1.0")

#: CheXpert column -> schema finding, in the csv's column order.
LABEL_COLUMNS: dict[str, str] = {
    "No Finding": "no_finding",
    "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "lung_opacity",
    "Lung Lesion": "lung_lesion",
    "Edema": "edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural_effusion",
    "Pleural Other": "pleural_other",
    "Fracture": "fracture",
    "Support Devices": "support_devices",
}
HEADER: tuple[str, ...] = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *LABEL_COLUMNS)
DEMO_HEADER: tuple[str, ...] = ("PATIENT", "GENDER", "AGE_AT_CXR", "PRIMARY_RACE", "ETHNICITY")
DEMO_NAMES: tuple[str, ...] = ("CHEXPERT DEMO.xlsx", "CHEXPERT DEMO.csv")

#: How uncertain (-1) labels are read: "zeros" (U-Zeros: absent), "ones" (U-Ones: present) or
#: "ignore" (neither: not in ``labels``; a row with an uncertain pathology has no single
#: finding). Irvin et al. 2019 compare these policies.
UNCERTAIN_POLICIES: tuple[str, ...] = ("zeros", "ones", "ignore")
DEFAULT_UNCERTAIN = "zeros"

SEX = {"Male": "male", "Female": "female", "Unknown": None}

#: Every PRIMARY_RACE string of CHEXPERT DEMO.xlsx -> schema race. The race part decides;
#: the Hispanic suffix is kept only where the race part is "Other" ("Other, Hispanic" ->
#: hispanic, as MIMIC-IV lists HISPANIC/LATINO as a race). Unknown / refused -> None.
RACE: dict[str, str | None] = {
    "White": "white",
    "White, non-Hispanic": "white",
    "White, Hispanic": "white",
    "White or Caucasian": "white",
    "Black or African American": "black",
    "Black, non-Hispanic": "black",
    "Black, Hispanic": "black",
    "Asian": "asian",
    "Asian, non-Hispanic": "asian",
    "Asian, Hispanic": "asian",
    "Asian - Historical Conv": "asian",
    "American Indian or Alaska Native": "american_indian_alaska_native",
    "Native American, non-Hispanic": "american_indian_alaska_native",
    "Native American, Hispanic": "american_indian_alaska_native",
    "Native Hawaiian or Other Pacific Islander": "native_hawaiian_pacific_islander",
    "Pacific Islander, non-Hispanic": "native_hawaiian_pacific_islander",
    "Pacific Islander, Hispanic": "native_hawaiian_pacific_islander",
    "Other": "other",
    "Other, non-Hispanic": "other",
    "Other, Hispanic": "hispanic",
    "Unknown": None,
    "Race and Ethnicity Unknown": None,
    "Patient Refused": None,
}

VIEWS: tuple[str, ...] = ("frontal", "lateral")

#: Split: the official train.csv / valid.csv division. valid.csv patients are ``val``;
#: train.csv patients are ``train`` or ``test`` by the patient hash below, fixed in the shipped
#: split file ``benchmark/data/splits/chexpert.json`` (made from the real train.csv).
SPLIT_SALT = "chexpert-v1.0"
TRAIN_CSV_FRACTIONS = {"train": 0.8, "test": 0.2}
SPLIT_METHOD = ("official valid.csv patients -> val (not in this file); train.csv patients -> "
                "train/test by sha256('chexpert-v1.0:' + patient id) with fractions "
                "train 0.8, test 0.2 (benchmark.data.splits.split_of)")

_LABEL_VALUES = {"1.0": 1, "1": 1, "0.0": 0, "0": 0, "-1.0": -1, "-1": -1, "": None}


def _strip_prefix(path: str) -> tuple[str, str | None]:
    """``CheXpert-v1.0-small/train/...`` -> (``train/...``, prefix)."""
    head, _, rest = path.partition("/")
    if head in PREFIXES:
        return rest, head
    return path, None


def find_dataset_dir(root: Path) -> Path:
    """The folder holding train.csv: the root itself or its CheXpert-v1.0[-small] child."""
    candidates = ["train.csv", *(f"{p}/train.csv" for p in PREFIXES)]
    return find_file(root, candidates, dataset=NAME, what="train.csv").parent  # type: ignore[union-attr]


def train_csv_split(patient_ids: Sequence[str]) -> dict[str, str]:
    """The train.csv part of the split (see :data:`SPLIT_METHOD`)."""
    return hash_splits(patient_ids, SPLIT_SALT, fractions=TRAIN_CSV_FRACTIONS)


def patient_of(rel_path: str, *, where: str) -> str:
    """``train/patient00001/study1/view1_frontal.jpg`` -> ``patient00001``."""
    parts = rel_path.split("/")
    if len(parts) < 4 or not parts[1].startswith("patient"):
        raise DataLayoutError(f"{where}: Path {rel_path!r} is not "
                              "<prefix>/<train|valid>/patientNNNNN/studyN/viewN_<view>.jpg")
    return parts[1]


def read_demographics(path: Path) -> dict[str, str | None]:
    """Patient -> raw PRIMARY_RACE (None for a blank cell) from ``CHEXPERT DEMO.xlsx``."""
    df = read_table(path, dataset=NAME, required=DEMO_HEADER)
    out: dict[str, str | None] = {}
    for pid, race in zip(df["PATIENT"], df["PRIMARY_RACE"], strict=True):
        pid = cell(pid)
        if pid is not None:
            out[pid] = cell(race)
    return out


def _table_columns(df: pd.DataFrame, table_path: Path, policy: str, drops: DropCounter
                   ) -> dict[str, list]:
    """The schema columns of one csv's rows (vectorised: train.csv has 223k rows)."""
    def where(mask: pd.Series) -> str:
        return f"{table_path} row {int(df.index[mask.to_numpy()][0]) + 2}"

    if df.empty:
        return {k: [] for k in ("sample_id", "patient_id", "prefix", "sex", "age", "finding",
                                "labels")}
    paths = df["Path"].str.strip()
    split_path = paths.str.split("/", n=1, expand=True)
    has_prefix = split_path[0].isin(PREFIXES)
    rel = paths.where(~has_prefix, split_path[1] if split_path.shape[1] > 1 else paths)
    parts = rel.str.split("/")
    bad = ~parts.map(lambda p: len(p) >= 4 and p[1].startswith("patient"))
    if bad.any():
        raise DataLayoutError(f"{where(bad)}: Path {paths[bad].iloc[0]!r} is not "
                              "<prefix>/<train|valid>/patientNNNNN/studyN/viewN_<view>.jpg")
    sex_raw = df["Sex"].str.strip()
    bad = ~sex_raw.isin(list(SEX))
    if bad.any():
        raise DataLayoutError(f"{where(bad)}: Sex {sex_raw[bad].iloc[0]!r}; expected Male, "
                              "Female or Unknown")
    sex = sex_raw.map(SEX)
    drops.unknown_value("Sex Unknown", int(sex.isna().sum()))
    age_text = df["Age"].str.strip()
    age = pd.to_numeric(age_text.replace("", None), errors="coerce")
    bad = age.isna() & (age_text != "")
    if bad.any():
        raise DataLayoutError(f"{where(bad)}: Age {age_text[bad].iloc[0]!r} is not a number")
    age = age.where(age != 0)  # CheXpert's code for a missing age
    drops.unknown_value("Age 0 or blank", int(age.isna().sum()))

    cells = df[list(LABEL_COLUMNS)].apply(lambda c: c.str.strip())
    codes = np.zeros(cells.shape, dtype=np.int8)  # 1 positive, 0 negative/blank, -1 uncertain
    for j, column in enumerate(LABEL_COLUMNS):
        col = cells[column]
        bad = ~col.isin(list(_LABEL_VALUES))
        if bad.any():
            raise DataLayoutError(f"{where(bad)}: {column} {col[bad].iloc[0]!r}; expected 1.0, "
                                  "0.0, -1.0 or blank")
        codes[:, j] = col.map(lambda v: _LABEL_VALUES[v] or 0).to_numpy()
    names = np.array(list(LABEL_COLUMNS.values()))
    pathology = ~np.isin(names, ["no_finding", "support_devices"])
    positive = codes == 1
    if policy == "ones":
        positive |= codes == -1
    uncertain_pathology = ((codes == -1) & pathology).any(axis=1) if policy == "ignore" else (
        np.zeros(len(df), dtype=bool))
    n_path = (positive & pathology).sum(axis=1)
    first_path = np.argmax(positive & pathology, axis=1)
    no_finding = positive[:, 0]
    finding: list[str | None] = []
    why: Counter[str] = Counter()
    for k in range(len(df)):
        if uncertain_pathology[k]:
            finding.append(None)
            why["an uncertain label (policy ignore)"] += 1
        elif n_path[k] == 1:
            finding.append(str(names[first_path[k]]))
        elif n_path[k] > 1:
            finding.append(None)
            why["several findings"] += 1
        elif no_finding[k]:
            finding.append("no_finding")
        else:
            finding.append(None)
            why["no positive label"] += 1
    for reason, n in why.items():
        drops.unknown_value(f"finding ({reason})", n)
    labels = [names[row].tolist() for row in positive]
    return {
        "sample_id": rel.tolist(),
        "patient_id": parts.str[1].tolist(),
        "prefix": split_path[0][has_prefix].tolist(),
        "sex": [None if isinstance(v, float) else v for v in sex.tolist()],
        "age": [None if np.isnan(v) else float(v) for v in age.tolist()],
        "finding": finding,
        "labels": labels,
    }


def load(*, root: str | os.PathLike | None, image_size: int | None = None,
         n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
         uncertain: str = DEFAULT_UNCERTAIN, views: Sequence[str] = ("frontal",),
         demographics: str | os.PathLike | None = None, check: str = "exists",
         ) -> datasets.Dataset:
    """Load a local CheXpert v1.0 copy (small or full) as standard-schema rows.

    Args:
        root: the folder holding ``train.csv`` and ``valid.csv``, or its parent.
        image_size, n_images, seed, split_salt: ignored (native images; the split is the
            shipped split file, see :data:`SPLIT_METHOD`).
        uncertain: uncertain-label policy, one of :data:`UNCERTAIN_POLICIES`.
        views: which of "frontal", "lateral" to keep (the other rows are dropped, counted).
        demographics: path of ``CHEXPERT DEMO.xlsx`` (default: looked for in the dataset folder
            and its parent); without it ``race`` is None for every row (logged).
        check: image check at load time, see :data:`benchmark.data.real._common.IMAGE_CHECKS`.

    ``finding``: the single positive pathology; ``no_finding`` when only No Finding (and
    possibly Support Devices) is positive; None for several findings, none at all, or (policy
    ignore) an uncertain pathology. ``labels``: every positive observation.
    """
    del image_size, n_images, seed, split_salt
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"{NAME}: uncertain={uncertain!r}; expected one of "
                         f"{', '.join(UNCERTAIN_POLICIES)}")
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise ValueError(f"{NAME}: views={list(views)!r}; expected a non-empty subset of "
                         f"{', '.join(VIEWS)}")
    base = require_root(root, NAME, CARD)
    data_dir = find_dataset_dir(base)
    tables = [("train", data_dir / "train.csv")]
    valid = data_dir / "valid.csv"
    if valid.is_file():
        tables.append(("val", valid))
    else:
        log.warning("%s: %s is missing: no official validation rows", NAME, valid)

    if demographics is not None:
        demo_path: Path | None = Path(demographics)
        if not demo_path.is_file():
            raise FileNotFoundError(f"{NAME}: demographics file {demo_path} does not exist")
    else:
        demo_path = None
        for folder in (data_dir, data_dir.parent):
            demo_path = find_file(folder, DEMO_NAMES, dataset=NAME, what="demographics",
                                  required=False)
            if demo_path is not None:
                break
    if demo_path is None:
        log.warning("%s: no %s next to %s: race is unknown for every row", NAME,
                    " or ".join(DEMO_NAMES), data_dir)
        demo: dict[str, str | None] = {}
    else:
        demo = read_demographics(demo_path)

    drops = DropCounter(NAME)
    data_prefix = str(data_dir)
    rows = new_rows()
    n_in = 0
    unmapped: Counter[str] = Counter()
    for official, table_path in tables:
        df = read_table(table_path, dataset=NAME, required=HEADER)
        n_in += len(df)
        if official == "train":
            all_train = set(df["Path"].str.strip().str.split("/").str[-3])
        view_col = df["Frontal/Lateral"].str.strip().str.lower()
        bad_views = sorted(set(view_col) - set(VIEWS))
        if bad_views:
            raise DataLayoutError(f"{NAME}: {table_path}: Frontal/Lateral value(s) {bad_views}; "
                                  "expected Frontal or Lateral")
        keep = view_col.isin(views)
        drops.drop(f"view not in {list(views)}", int((~keep).sum()))
        df = df[keep]
        part = _table_columns(df, table_path, uncertain, drops)
        prefixes = set(part.pop("prefix"))
        if len(prefixes) > 1:
            raise DataLayoutError(f"{NAME}: {table_path} mixes path prefixes {sorted(prefixes)}")
        race = []
        for pid in part["patient_id"]:
            if not demo:
                race.append(None)
                continue
            if pid not in demo:
                drops.unknown_value("race (patient not in demographics file)")
                race.append(None)
                continue
            raw = demo[pid]
            if raw is not None and raw not in RACE:
                unmapped[raw] += 1
            value = RACE.get(raw) if raw is not None else None
            if value is None:
                drops.unknown_value("race (blank, unknown, refused or unmapped)")
            race.append(value)
        n = len(race)
        rows["sample_id"] += part["sample_id"]
        rows["patient_id"] += part["patient_id"]
        rows["split"] += [official] * n
        rows["image"] += [f"{data_prefix}/{rel}" for rel in part["sample_id"]]
        rows["finding"] += part["finding"]
        rows["labels"] += part["labels"]
        rows["sex"] += part["sex"]
        rows["age"] += part["age"]
        rows["race"] += race
        rows["source"] += [NAME] * n
    if unmapped:
        log.warning("%s: PRIMARY_RACE value(s) not in the documented mapping, set to unknown: "
                    "%s", NAME, dict(unmapped))
    # split: official valid.csv -> val; train.csv patients from the shipped split file
    split_file = load_split_file(NAME)
    train_idx = [i for i, s in enumerate(rows["split"]) if s == "train"]
    train_pids = [rows["patient_id"][i] for i in train_idx]
    for i, s in zip(train_idx, apply_split_file(
            train_pids, split_file, dataset=NAME,
            fallback=lambda p: train_csv_split([p])[p], present=all_train), strict=True):
        rows["split"][i] = s
    val_pids = {p for p, s in zip(rows["patient_id"], rows["split"], strict=True) if s == "val"}
    overlap = val_pids & set(train_pids)
    if overlap:
        raise DataLayoutError(f"{NAME}: patient {sorted(overlap)[0]} is in both train.csv and "
                              "valid.csv")
    check_images(rows["image"], check, dataset=NAME, root=base)
    drops.report(n_in, len(rows["sample_id"]))
    return to_dataset(rows, dataset=NAME, root=base)


def chexpert_split_from_csv(train_csv: str | os.PathLike) -> dict[str, str]:
    """The train.csv part of the split from a train.csv (used to make the shipped file)."""
    df = pd.read_csv(train_csv, usecols=["Path"], dtype=str)
    pids = set(df["Path"].str.strip().str.split("/").str[-3])
    bad = [p for p in pids if not p.startswith("patient")]
    if bad:
        raise DataLayoutError(f"{train_csv}: Path folder {bad[0]!r} is not patientNNNNN")
    return train_csv_split(sorted(pids))


register_dataset(
    DatasetSpec(
        name=NAME,
        description="CheXpert v1.0 (small or full) chest X-rays, 14 observations, sex, age, "
        "race from CHEXPERT DEMO.xlsx (needs --root)",
        loader=load,
        phantom=False,
        card=CARD,
    )
)
