"""Image folders with a metadata CSV: how synthetic samples are written and read back.

Layout of a folder::

    metadata.csv     one row per image: path, finding, and the attribute columns
    images/*.png     the images (``path`` is relative to the folder)
    masks/*.png      segmentation masks, for rows that have one (``mask_path``)
    controls/*.png   the control image a synthetic image was conditioned on (``control_path``)

``metadata.csv`` columns: ``path`` and ``finding`` are required, and so is every sensitive
attribute of the task it is scored for. Optional: ``sample_id``, ``patient_id``, ``age``,
``bmi``, ``mask_path``, ``control_path``, ``source_id`` (the real sample a synthetic image was
derived from), ``source`` and every attribute of :data:`benchmark.schema.ATTRIBUTES`
(``sex``, ``age_group``, ``age_band``, ``race``, ``skin_tone``, ``skin_tone_group``,
``bmi_class``). Empty cells mean unknown; a derived attribute left empty is derived from its
base (``age``, ``skin_tone``, ``bmi``) where that is known. This is the format
``python -m benchmark evaluate --synthetic DIR`` reads, so any generator's output can be
scored.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import datasets
import pandas as pd
from tqdm.auto import tqdm

from ..schema import (
    ATTRIBUTES,
    COLUMNS,
    DERIVED,
    FEATURES,
    IMAGE_COLUMNS,
    SchemaError,
    check_value,
    derive_attributes,
)
from .validate import check_header, confined_path, csv_header, open_image, png_bytes

log = logging.getLogger(__name__)

METADATA = "metadata.csv"
_REQUIRED = ("path", "finding")
_OPTIONAL = ("sample_id", "patient_id", "age", "bmi", "mask_path", "control_path", "source_id",
             *ATTRIBUTES, "source")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(text: str) -> str:
    return _SAFE.sub("_", text).strip("._") or "image"


def write_image_folder(ds: datasets.Dataset, directory: str | Path, *,
                       progress: bool = True) -> Path:
    """Write ``ds`` (standard schema) as PNG images + ``metadata.csv`` into ``directory``.

    The folder appears complete or not at all: it is written beside the target and renamed
    into place; an existing folder at ``directory`` is replaced.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    (tmp / "images").mkdir(parents=True)
    try:
        meta = ds.remove_columns(list(IMAGE_COLUMNS)).to_pandas()
        paths, mask_paths, control_paths = [], [], []
        seen: set[str] = set()
        for i, row in enumerate(tqdm(ds, desc=f"writing {directory.name}", disable=not progress,
                                     total=len(ds), leave=False)):
            name = _slug(str(row["sample_id"]))
            if name in seen:
                name = f"{name}-{i}"
            seen.add(name)
            rel = f"images/{name}.png"
            row["image"].save(tmp / rel)
            paths.append(rel)
            if row["mask"] is not None:
                (tmp / "masks").mkdir(exist_ok=True)
                row["mask"].save(tmp / f"masks/{name}.png")
                mask_paths.append(f"masks/{name}.png")
            else:
                mask_paths.append("")
            if row["control"] is not None:
                (tmp / "controls").mkdir(exist_ok=True)
                row["control"].save(tmp / f"controls/{name}.png")
                control_paths.append(f"controls/{name}.png")
            else:
                control_paths.append("")
        meta.insert(0, "path", paths)
        if any(mask_paths):
            meta.insert(1, "mask_path", mask_paths)
        if any(control_paths):
            meta.insert(1 + any(mask_paths), "control_path", control_paths)
        if not meta["source_id"].notna().any():
            meta = meta.drop(columns=["source_id"])
        meta["labels"] = meta["labels"].map(lambda v: "|".join(v) if v is not None else "")
        meta.to_csv(tmp / METADATA, index=False)
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _side_image(directory: Path, rel: str | None, what: str, where: str) -> str | None:
    """The path of a row's mask or control image (None when the row has none), confined to
    ``directory``."""
    if rel is None:
        return None
    path = confined_path(directory, rel, where=f"{where} {what}_path")
    if not path.is_file():
        raise FileNotFoundError(f"{where}: {what} {path} does not exist")
    return str(path)


def _cell(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def read_image_folder(directory: str | Path, *, required_attributes: Sequence[str] = (),
                      source: str = "synthetic:external", progress: bool = True,
                      allow_empty: bool = False) -> datasets.Dataset:
    """Read a folder written by :func:`write_image_folder` (or by anyone, same layout).

    Every image is opened and decoded once, so a missing or corrupt file fails here with the
    row and path named, not later inside a metric. Raises :class:`SchemaError` (a ValueError)
    or :class:`FileNotFoundError` with one clear message. The checks of
    :mod:`benchmark.data.validate` apply: paths confined to ``directory`` (no ``..``, absolute
    paths or symlinks out), one row per image file, one image size, 16-bit images scaled to 8
    bits (converted images are embedded), size limits, unique column names, and at least one
    row (``allow_empty``: a header-only table is a valid empty folder, e.g. a real-only run's).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"image folder {directory} does not exist")
    meta_path = directory / METADATA
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path} is missing: an image folder needs a {METADATA} with columns "
            f"{', '.join(_REQUIRED)} and the attribute columns"
        )
    try:
        meta = pd.read_csv(meta_path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise SchemaError(f"{meta_path} is empty; expected a header line with columns "
                          f"{', '.join(_REQUIRED)} and one row per image") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise SchemaError(f"{meta_path}: cannot parse as CSV ({err})") from None
    check_header(meta_path, csv_header(meta_path), n_rows=max(len(meta), allow_empty),
                 what=METADATA)
    required = [*_REQUIRED, *required_attributes]
    # a derived attribute (e.g. skin_tone_group) may come from its base column (skin_tone)
    missing = [c for c in required if c not in meta.columns
               and not (c in DERIVED and DERIVED[c][0] in meta.columns)]
    if missing:
        raise SchemaError(
            f"{meta_path} is missing column(s) {', '.join(missing)}; expected "
            f"{', '.join(required)} (found: {', '.join(meta.columns)})"
        )
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    first_row_of: dict[str, int] = {}  # resolved image file -> the first row naming it
    size: tuple[tuple[int, int], int] | None = None  # (width, height) of the first image, row
    converted = 0
    for i, rec in enumerate(tqdm(meta.to_dict("records"), desc=f"reading {directory.name}",
                                 disable=not progress, leave=False)):
        where = f"{meta_path} row {i + 2}"  # +2: header line, 1-based
        rel = _cell(rec["path"])
        if rel is None:
            raise SchemaError(f"{where}: empty path")
        path = confined_path(directory, rel, where=where)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: image {path} does not exist")
        real = os.path.realpath(path)
        if real in first_row_of:
            raise SchemaError(f"{where}: image {rel!r} is the same file as row "
                              f"{first_row_of[real]}'s; expected one row per image file")
        first_row_of[real] = i + 2
        im, original_mode = open_image(path, where=where)
        if size is None:
            size = (im.size, i + 2)
        elif im.size != size[0]:
            raise SchemaError(f"{where}: image {path} is {im.size[0]}x{im.size[1]} pixels, row "
                              f"{size[1]}'s is {size[0][0]}x{size[0][1]}; expected one size "
                              "for every image")
        # an 8-bit L/RGB image is read from its file; anything else is converted once here
        # (16-bit scaled, alpha dropped) and embedded, so no later stage clips it
        image_cell: object = str(path)
        if original_mode != im.mode:
            image_cell = {"bytes": png_bytes(im), "path": None}
            converted += 1
        values = {c: _cell(rec.get(c)) for c in _OPTIONAL}
        finding = _cell(rec["finding"])
        for column in ("finding", *ATTRIBUTES):
            check_value(column, finding if column == "finding" else values[column], where=where)
        numbers: dict[str, float | None] = {}
        for column in ("age", "bmi"):
            numbers[column] = None
            if values[column] is not None:
                try:
                    numbers[column] = float(values[column])
                except ValueError:
                    raise SchemaError(
                        f"{where}: {column} {values[column]!r} is not a number") from None
                if math.isnan(numbers[column]):
                    raise SchemaError(
                        f"{where}: {column} is NaN; leave the cell empty for unknown")
        try:
            derived = derive_attributes({**values, **numbers})
        except SchemaError as err:
            raise SchemaError(f"{where}: {err}") from None
        for column, (base, _) in DERIVED.items():
            given = values[column]
            if given is not None and given != derived[column]:
                raise SchemaError(f"{where}: {column} {given!r} does not match {base} "
                                  f"{values[base]!r} (expected {derived[column]!r})")
        for attr in required_attributes:
            if (derived[attr] if attr in DERIVED else values[attr]) is None:
                raise SchemaError(f"{where}: empty {attr}; the task needs it for every image")
        mask, control = (_side_image(directory, values[col], what, where)
                         for col, what in (("mask_path", "mask"), ("control_path", "control")))
        sample_id = values["sample_id"] or f"row-{i:06d}"
        rows["sample_id"].append(sample_id)
        rows["patient_id"].append(values["patient_id"] or sample_id)
        rows["split"].append("train")
        rows["image"].append(image_cell)
        rows["finding"].append(finding)
        rows["labels"].append([finding] if finding else [])
        rows["sex"].append(values["sex"])
        rows["age"].append(numbers["age"])
        rows["race"].append(values["race"])
        rows["skin_tone"].append(values["skin_tone"])
        rows["bmi"].append(numbers["bmi"])
        rows["mask"].append(mask)
        rows["control"].append(control)
        rows["source_id"].append(values["source_id"])
        for column in DERIVED:
            rows[column].append(derived[column])
        rows["source"].append(values["source"] or source)
    if len(set(rows["sample_id"])) != len(rows["sample_id"]):
        raise SchemaError(f"{meta_path}: sample_id values are not unique")
    if converted:
        log.info("%s: converted %d image(s) to 8 bits (16-bit scaled, alpha dropped, palette "
                 "to RGB)", directory, converted)
    return datasets.Dataset.from_dict(rows, features=FEATURES)
