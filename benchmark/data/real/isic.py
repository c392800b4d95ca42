"""ISIC 2019 and ISIC 2020 dermoscopy challenge training sets.

Sources: ISIC 2019 (Tschandl et al. 2018 HAM10000; Codella et al. 2017; Combalia et al. 2019
BCN20000), https://challenge.isic-archive.com/data/#2019; ISIC 2020 (Rotemberg et al., "A
patient-centric dataset of images and metadata for identifying melanomas using clinical
context", Sci Data 2021), https://challenge.isic-archive.com/data/#2020. Licence: CC BY-NC
4.0 (2019 training data) and CC BY-NC 4.0 (2020). Layout, encodings, mapping and traps:
``data_cards/isic.md``.
"""

from __future__ import annotations

import logging
import os

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

SEX = {"male": "male", "female": "female"}
MISSING = ("unknown", "NA", "nan")

GT_2019 = ("ISIC_2019_Training_GroundTruth.csv",)
META_2019 = ("ISIC_2019_Training_Metadata.csv",)
GT_2019_COLUMNS: dict[str, str | None] = {
    "MEL": "melanoma", "NV": "melanocytic_nevus", "BCC": "basal_cell_carcinoma",
    "AK": "actinic_keratosis", "BKL": "benign_keratosis", "DF": "dermatofibroma",
    "VASC": "vascular_lesion", "SCC": "squamous_cell_carcinoma", "UNK": None,
}
IMAGES_2019 = ("ISIC_2019_Training_Input", "ISIC_2019_Training_Input/ISIC_2019_Training_Input",
               "images", "")

GT_2020 = ("ISIC_2020_Training_GroundTruth_v2.csv", "ISIC_2020_Training_GroundTruth.csv",
           "train.csv")
HEADER_2020 = ("image_name", "patient_id", "lesion_id", "sex", "age_approx",
               "anatom_site_general_challenge", "diagnosis", "benign_malignant", "target")
#: ISIC 2020 diagnosis -> schema finding (lesions grouped as in ISIC 2019's BKL class);
#: "unknown" and the rare classes without a schema finding give None.
DIAGNOSIS_2020: dict[str, str | None] = {
    "melanoma": "melanoma",
    "nevus": "melanocytic_nevus",
    "seborrheic keratosis": "benign_keratosis",
    "lentigo NOS": "benign_keratosis",
    "lichenoid keratosis": "benign_keratosis",
    "solar lentigo": "benign_keratosis",
    "cafe-au-lait macule": None,
    "atypical melanocytic proliferation": None,
    "unknown": None,
}
IMAGES_2020 = ("train", "ISIC_2020_Training_JPEG/train", "jpeg/train",
               "ISIC_2020_Training_JPEG", "images", "")


def _image_dir(root, candidates, first: str, dataset: str):
    for rel in candidates:
        folder = root / rel if rel else root
        if (folder / first).is_file():
            return folder
    raise FileNotFoundError(f"{dataset}: image {first} not found under {root}; looked in "
                            f"{', '.join(c or '.' for c in candidates)}")


def load_isic2019(*, root: str | os.PathLike | None, image_size: int | None = None,
                  n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
                  check: str = "exists") -> datasets.Dataset:
    """ISIC 2019 training set: one-hot ground truth + metadata (age_approx, sex, lesion_id)."""
    del image_size, n_images, seed, split_salt
    name = "isic2019"
    base = require_root(root, name, "isic.md")
    gt_path = find_named(base, GT_2019, max_depth=2)
    meta_path = find_named(base, META_2019, max_depth=2)
    if gt_path is None or meta_path is None:
        raise FileNotFoundError(f"{name}: {GT_2019[0]} and {META_2019[0]} are needed under "
                                f"{base} (up to 2 levels down)")
    gt = read_table(gt_path, dataset=name, required=("image", *GT_2019_COLUMNS))
    meta = read_table(meta_path, dataset=name,
                      required=("image", "age_approx", "anatom_site_general", "lesion_id", "sex"))
    meta_of = {r["image"]: r for r in meta.to_dict("records")}
    images = _image_dir(gt_path.parent, IMAGES_2019, f"{gt['image'].iloc[0]}.jpg", name)
    drops = DropCounter(name)
    rows = new_rows()
    for i, rec in enumerate(gt.to_dict("records")):
        where = f"{gt_path} row {i + 2}"
        hot = [c for c in GT_2019_COLUMNS if number(rec[c], where=f"{where} {c}") == 1.0]
        if len(hot) != 1:
            raise DataLayoutError(f"{where}: {len(hot)} classes set; expected exactly one of "
                                  f"{', '.join(GT_2019_COLUMNS)}")
        finding = GT_2019_COLUMNS[hot[0]]
        image = rec["image"].strip()
        m = meta_of.get(image)
        if m is None:
            drops.unknown_value("metadata row (image not in the metadata csv)")
            m = {}
        sex_raw = cell(m.get("sex"), MISSING)
        if sex_raw is not None and sex_raw not in SEX:
            raise DataLayoutError(f"{meta_path}: image {image}: sex {sex_raw!r}; expected male, "
                                  "female or blank")
        lesion = cell(m.get("lesion_id"))
        if lesion is None:
            drops.unknown_value("lesion_id (patient_id = image id)")
        rows["sample_id"].append(image)
        rows["patient_id"].append(lesion or image)
        rows["image"].append(str(images / f"{image}.jpg"))
        rows["finding"].append(finding)
        rows["labels"].append([finding] if finding else [])
        rows["sex"].append(SEX.get(sex_raw) if sex_raw else None)
        rows["age"].append(number(m.get("age_approx"), where=f"{meta_path} {image} age_approx",
                                  missing=MISSING))
        rows["source"].append(name)
    splits = hash_splits(rows["patient_id"], name)
    rows["split"] = [splits[p] for p in rows["patient_id"]]
    check_images(rows["image"], check, dataset=name, root=base)
    drops.report(len(gt), len(rows["sample_id"]))
    return to_dataset(rows, dataset=name, root=base)


def load_isic2020(*, root: str | os.PathLike | None, image_size: int | None = None,
                  n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
                  check: str = "exists") -> datasets.Dataset:
    """ISIC 2020 training set: ground-truth csv with patient ids, sex, age_approx, diagnosis."""
    del image_size, n_images, seed, split_salt
    name = "isic2020"
    base = require_root(root, name, "isic.md")
    gt_path = find_named(base, GT_2020, max_depth=2)
    if gt_path is None:
        raise FileNotFoundError(f"{name}: none of {', '.join(GT_2020)} under {base}")
    gt = read_table(gt_path, dataset=name, required=HEADER_2020)
    images = _image_dir(gt_path.parent, IMAGES_2020, f"{gt['image_name'].iloc[0]}.jpg", name)
    drops = DropCounter(name)
    rows = new_rows()
    unmapped: set[str] = set()
    for i, rec in enumerate(gt.to_dict("records")):
        where = f"{gt_path} row {i + 2}"
        diagnosis = cell(rec["diagnosis"]) or "unknown"
        if diagnosis not in DIAGNOSIS_2020:
            unmapped.add(diagnosis)
        finding = DIAGNOSIS_2020.get(diagnosis)
        if finding is None:
            drops.unknown_value(f"finding (diagnosis {diagnosis})")
        sex_raw = cell(rec["sex"], MISSING)
        if sex_raw is not None and sex_raw not in SEX:
            raise DataLayoutError(f"{where}: sex {sex_raw!r}; expected male, female or blank")
        image = rec["image_name"].strip()
        rows["sample_id"].append(image)
        rows["patient_id"].append(cell(rec["patient_id"]) or image)
        rows["image"].append(str(images / f"{image}.jpg"))
        rows["finding"].append(finding)
        rows["labels"].append([finding] if finding else [])
        rows["sex"].append(SEX.get(sex_raw) if sex_raw else None)
        rows["age"].append(number(rec["age_approx"], where=f"{where} age_approx",
                                  missing=MISSING))
        rows["source"].append(name)
    if unmapped:
        log.warning("%s: diagnosis value(s) not in the documented mapping (finding None): %s",
                    name, sorted(unmapped))
    splits = hash_splits(rows["patient_id"], name)
    rows["split"] = [splits[p] for p in rows["patient_id"]]
    check_images(rows["image"], check, dataset=name, root=base)
    drops.report(len(gt), len(rows["sample_id"]))
    return to_dataset(rows, dataset=name, root=base)


register_dataset(DatasetSpec(
    name="isic2019", loader=load_isic2019, phantom=False, card="isic.md",
    description="ISIC 2019 dermoscopy training set, 8 diagnoses, sex, approximate age "
    "(needs --root)"))
register_dataset(DatasetSpec(
    name="isic2020", loader=load_isic2020, phantom=False, card="isic.md",
    description="ISIC 2020 dermoscopy training set, melanoma/nevus/keratosis, patient ids, sex, "
    "approximate age (needs --root)"))
