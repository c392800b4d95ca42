"""Fixture trees that reproduce the real datasets' published layouts (headers, encodings,
folder names), with tiny stub images. Shared by the tests of benchmark/data/real/."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmark.data.real.chexpert import HEADER as CHEXPERT_HEADER
from benchmark.data.real.chexpert import LABEL_COLUMNS


def stub_image(path: Path, *, seed: int = 0, size: tuple[int, int] = (40, 32),
               mode: str = "L") -> Path:
    """A small JPEG/PNG (by suffix) with random content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]],
              *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as f:  # type: ignore[operator]
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ------------------------------------------------------------------------------ CheXpert

#: (patient, study, view, sex, age, frontal/lateral, AP/PA, {label column: value})
CHEXPERT_TRAIN = [
    ("patient00001", 1, 1, "Female", "68", "Frontal", "AP",
     {"No Finding": "1.0", "Pneumothorax": "0.0", "Support Devices": "1.0"}),
    ("patient00002", 2, 1, "Female", "87", "Frontal", "AP",
     {"Cardiomegaly": "-1.0", "Pleural Effusion": "1.0"}),
    ("patient00002", 1, 1, "Female", "83", "Frontal", "AP",
     {"Lung Opacity": "1.0", "Fracture": "1.0", "Consolidation": "-1.0"}),
    ("patient00002", 1, 2, "Female", "83", "Lateral", "",
     {"Lung Opacity": "1.0", "Fracture": "1.0"}),
    ("patient00003", 1, 1, "Male", "41", "Frontal", "AP", {"Edema": "1.0"}),
    ("patient00004", 1, 1, "Female", "20", "Frontal", "PA", {"No Finding": "1.0"}),
    ("patient00004", 1, 2, "Female", "20", "Lateral", "", {"No Finding": "1.0"}),
    ("patient00005", 1, 1, "Male", "0", "Frontal", "PA", {"Pneumonia": "1.0"}),
    ("patient00006", 1, 1, "Unknown", "33", "Frontal", "AP", {"Atelectasis": "-1.0"}),
]
CHEXPERT_VALID = [
    ("patient64541", 1, 1, "Male", "73", "Frontal", "AP",
     {"No Finding": "0.0", "Cardiomegaly": "1.0", "Support Devices": "1.0"}),
    ("patient64542", 1, 1, "Male", "70", "Frontal", "PA", {"No Finding": "1.0"}),
]
CHEXPERT_DEMO = [  # PATIENT, GENDER, AGE_AT_CXR, PRIMARY_RACE, ETHNICITY
    ("patient00001", "Female", 68, "White, non-Hispanic", "Non-Hispanic/Non-Latino"),
    ("patient00002", "Female", 87, "Black or African American", "Non-Hispanic/Non-Latino"),
    ("patient00003", "Male", 41, "Asian - Historical Conv", "Unknown"),
    ("patient00004", "Female", 20, "Other, Hispanic", "Hispanic/Latino"),
    ("patient00005", "Male", 55, "Patient Refused", "Patient Refused"),
    ("patient64541", "Male", 73, "Pacific Islander, non-Hispanic", "Non-Hispanic/Non-Latino"),
]


def chexpert_rows(prefix: str, split: str, spec) -> list[list[str]]:
    out = []
    for pid, study, view, sex, age, fl, appa, labels in spec:
        kind = "frontal" if fl == "Frontal" else "lateral"
        path = f"{prefix}/{split}/{pid}/study{study}/view{view}_{kind}.jpg"
        out.append([path, sex, age, fl, appa, *(labels.get(c, "") for c in LABEL_COLUMNS)])
    return out


def make_chexpert(root: Path, *, prefix: str = "CheXpert-v1.0-small", demo: bool = True,
                  train=CHEXPERT_TRAIN, valid=CHEXPERT_VALID, images: bool = True) -> Path:
    """``root/<prefix>/{train,valid}.csv`` + images, ``root/CHEXPERT DEMO.xlsx``."""
    base = root / prefix
    for split, spec, name in (("train", train, "train.csv"), ("valid", valid, "valid.csv")):
        rows = chexpert_rows(prefix, split, spec)
        write_csv(base / name, CHEXPERT_HEADER, rows)
        if images:
            for i, r in enumerate(rows):
                stub_image(root / r[0], seed=i)
    if demo:
        pd.DataFrame(CHEXPERT_DEMO, columns=["PATIENT", "GENDER", "AGE_AT_CXR", "PRIMARY_RACE",
                                             "ETHNICITY"]).to_excel(
            root / "CHEXPERT DEMO.xlsx", index=False)
    return root


def chexpert_many(n_patients: int = 40, seed: int = 0) -> list:
    """A larger CheXpert train spec: every patient one frontal image of one of five findings."""
    rng = np.random.default_rng(seed)
    findings = ["No Finding", "Pneumonia", "Pleural Effusion", "Cardiomegaly", "Edema"]
    out = []
    for k in range(n_patients):
        f = findings[k % len(findings)]
        out.append((f"patient{k + 1:05d}", 1, 1, "Female" if rng.random() < 0.5 else "Male",
                    str(int(rng.integers(20, 90))), "Frontal", "AP", {f: "1.0"}))
    return out
