"""IXI: brain MRI of about 600 healthy volunteers from three London hospitals.

Source: Information eXtraction from Images project, https://brain-development.org/ixi-dataset/.
Licence: CC BY-SA 3.0. Layout, encodings, our mapping and known traps: ``data_cards/ixi.md``.
"""

from __future__ import annotations

import logging
import os
import re

import datasets
import pandas as pd
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

NAME = "ixi"
CARD = "ixi.md"
TABLES = ("IXI.xls", "IXI.xlsx", "IXI.csv")
SEX_COLUMN = "SEX_ID (1=m, 2=f)"
HEADER = ("IXI_ID", SEX_COLUMN, "HEIGHT", "WEIGHT", "ETHNIC_ID", "AGE")
SEX = {"1": "male", "2": "female"}
MODALITIES = ("T1", "T2", "PD", "MRA")
#: Words of the workbook's own "Ethnicity" code sheet -> schema race (first match wins);
#: the codes are read from the file, not assumed.
ETHNIC_WORDS = (("white", "white"), ("black", "black"), ("chinese", "asian"),
                ("asian", "asian"), ("other", "other"))


def _ethnic_codes(table_path) -> dict[str, str | None]:
    """ETHNIC_ID code -> schema race from the workbook's Ethnicity sheet ({} if absent)."""
    if not table_path.name.lower().endswith((".xls", ".xlsx")):
        return {}
    sheets = pd.read_excel(table_path, sheet_name=None, dtype=str, keep_default_na=False)
    sheet = next((df for n, df in sheets.items() if n.strip().lower().startswith("ethnic")),
                 None)
    if sheet is None or sheet.shape[1] < 2:
        return {}
    out: dict[str, str | None] = {}
    for code, text in zip(sheet.iloc[:, 0], sheet.iloc[:, 1], strict=True):
        code = (cell(code) or "").removesuffix(".0")
        words = (cell(text) or "").lower()
        out[code] = next((race for w, race in ETHNIC_WORDS if w in words), None)
    return out


def load(*, root: str | os.PathLike | None, image_size: int | None = None,
         n_images: int | None = None, seed: int = 0, split_salt: str = "fairsynth",
         modality: str = "T1", plane: str = "axial", position: float = 0.5,
         slice_index: int | None = None, missing_images: str = "drop",
         progress: bool = True) -> datasets.Dataset:
    """Load a local IXI copy: ``IXI.xls`` (sheet ``Table``) + ``IXI-<modality>/*.nii.gz``.

    One 2-D slice per subject (same slice rules as OASIS); ``finding`` is ``no_finding``
    (healthy volunteers); ``bmi`` from HEIGHT (cm) and WEIGHT (kg). Subjects without an image
    of ``modality`` are dropped and counted (``missing_images="error"`` to fail instead).
    """
    del image_size, n_images, seed, split_salt
    if modality not in MODALITIES:
        raise ValueError(f"{NAME}: modality={modality!r}; expected one of {', '.join(MODALITIES)}")
    base = require_root(root, NAME, CARD)
    table_path = find_named(base, TABLES, max_depth=2)
    if table_path is None:
        raise FileNotFoundError(f"{NAME}: {' or '.join(TABLES)} not found under {base}")
    df = read_table(table_path, dataset=NAME, required=HEADER,
                    sheet="Table" if table_path.suffix != ".csv" else None)
    codes = _ethnic_codes(table_path)
    if not codes:
        log.warning("%s: no Ethnicity code sheet in %s: race is unknown for every row", NAME,
                    table_path.name)
    folder = next((p for p in (base / f"IXI-{modality}", base / modality, base)
                   if p.is_dir() and any(p.glob(f"IXI*-{modality}.nii*"))), None)
    images = {}
    if folder is not None:
        for p in folder.glob(f"IXI*-{modality}.nii*"):
            m = re.match(r"IXI(\d{3})-", p.name)
            if m:
                images[int(m.group(1))] = p
    drops = DropCounter(NAME)
    # duplicate IXI_ID rows: identical ones collapse; conflicting fields become unknown
    records: dict[int, dict[str, str | None]] = {}
    for i, rec in enumerate(df.to_dict("records")):
        raw_id = number(rec["IXI_ID"], where=f"{table_path} row {i + 2} IXI_ID")
        if raw_id is None:
            raise DataLayoutError(f"{table_path} row {i + 2}: empty IXI_ID")
        values = {c: (cell(rec[c]) or "").removesuffix(".0") or None for c in HEADER[1:]}
        values = {c: (None if v in ("0", None) else v) for c, v in values.items()}  # 0 = missing
        key = int(raw_id)
        if key in records:
            drops.drop("duplicate IXI_ID row")
            old = records[key]
            for c, v in values.items():
                if old[c] is None:
                    old[c] = v
                elif v is not None and v != old[c]:
                    old[c] = None
                    drops.unknown_value(f"{c} (conflicting duplicate rows)")
        else:
            records[key] = values
    rows = new_rows()
    for key, values in tqdm(sorted(records.items()), desc=NAME, disable=not progress,
                            leave=False):
        where = f"{table_path} IXI_ID {key}"
        path = images.get(key)
        if path is None:
            if missing_images == "error":
                raise FileNotFoundError(f"{NAME}: no IXI{key:03d}-*-{modality}.nii.gz for {where}")
            drops.drop(f"no {modality} image")
            continue
        sex_raw = values[SEX_COLUMN]
        if sex_raw is not None and sex_raw not in SEX:
            raise DataLayoutError(f"{where}: {SEX_COLUMN} {sex_raw!r}; expected 1, 2 or 0")
        height = number(values["HEIGHT"], where=f"{where} HEIGHT")
        weight = number(values["WEIGHT"], where=f"{where} WEIGHT")
        bmi = weight / (height / 100) ** 2 if height and weight else None
        ethnic = values["ETHNIC_ID"]
        race = codes.get(ethnic) if ethnic is not None else None
        if race is None:
            drops.unknown_value("race")
        rows["sample_id"].append(path.name.split(".nii")[0])
        rows["patient_id"].append(f"IXI{key:03d}")
        rows["image"].append(png_cell(volume_slice(path, plane=plane, position=position,
                                                   index=slice_index, root=base)))
        rows["finding"].append("no_finding")
        rows["labels"].append(["no_finding"])
        rows["sex"].append(SEX.get(sex_raw) if sex_raw else None)
        rows["age"].append(number(values["AGE"], where=f"{where} AGE"))
        rows["race"].append(race)
        rows["bmi"].append(bmi)
        rows["source"].append(NAME)
    splits = hash_splits(rows["patient_id"], NAME)
    rows["split"] = [splits[p] for p in rows["patient_id"]]
    drops.report(len(df), len(rows["sample_id"]))
    return to_dataset(rows, dataset=NAME, root=base)


register_dataset(DatasetSpec(
    name=NAME, loader=load, phantom=False, card=CARD,
    description="IXI healthy-volunteer brain MRI (T1/T2/PD/MRA), one axial slice per subject, "
    "sex, age, ethnicity, BMI (needs --root)"))
