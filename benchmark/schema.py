"""The standard sample schema and every attribute vocabulary: the one place they are defined.

Every loader (real dataset or phantom) returns a :class:`datasets.Dataset` whose rows follow
:data:`FEATURES`. Missing values are explicit ``None``, never a silent default.

Columns
-------
sample_id   unique id of the image within its source (string)
patient_id  id of the patient; splits are made over patients, never over rows
split       one of :data:`SPLITS`
image       the image (PIL on access; stored as PNG bytes)
finding     the image's single finding, a name from :data:`FINDINGS` (the task maps it to a
            class); ``None`` only where a dataset has no single finding
labels      every finding present in the image (a list of names from :data:`FINDINGS`)
sex         one of :data:`SEX` or ``None``
age         age in years (float) or ``None``
age_group   :func:`age_to_group` of ``age`` (one of :data:`AGE_GROUPS`) or ``None``
race        one of :data:`RACE` or ``None``
skin_tone   Fitzpatrick type, one of :data:`SKIN_TONE`, or ``None``
source      where the row comes from: a dataset name, or ``synthetic:<method>``
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import datasets

SPLITS: tuple[str, ...] = ("train", "val", "test")

SEX: tuple[str, ...] = ("female", "male")

# Age bins in years: [0, 18), [18, 40), [40, 60), [60, 80), [80, inf).
AGE_BIN_EDGES: tuple[float, ...] = (18.0, 40.0, 60.0, 80.0)
AGE_GROUPS: tuple[str, ...] = ("0-17", "18-39", "40-59", "60-79", "80+")

# Race/ethnicity, following the US OMB categories that MIMIC-IV and CheXpert records use.
# Unknown, declined and unmapped values are None (loaders count them).
RACE: tuple[str, ...] = (
    "american_indian_alaska_native",
    "asian",
    "black",
    "hispanic",
    "native_hawaiian_pacific_islander",
    "white",
    "other",
)

# Fitzpatrick skin types I-VI (unknown is None).
SKIN_TONE: tuple[str, ...] = ("I", "II", "III", "IV", "V", "VI")

# Findings across the supported datasets, snake_case. Tasks map findings to their classes.
FINDINGS: tuple[str, ...] = (
    # CheXpert / MIMIC-CXR CheXpert-labeller findings
    "no_finding",
    "enlarged_cardiomediastinum",
    "cardiomegaly",
    "lung_opacity",
    "lung_lesion",
    "edema",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "pneumothorax",
    "pleural_effusion",
    "pleural_other",
    "fracture",
    "support_devices",
    # COVID-19 image data collection
    "covid_19",
    # Dermatology (FairGen's five Fitzpatrick17k diseases)
    "allergic_contact_dermatitis",
    "basal_cell_carcinoma",
    "lichen_planus",
    "psoriasis",
    "squamous_cell_carcinoma",
    # Brain MRI (OASIS: clinical dementia rating > 0)
    "dementia",
    # Cardiac MRI
    "heart_failure",
)

# The sensitive attributes a task may name, with their vocabularies.
ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    "sex": SEX,
    "age_group": AGE_GROUPS,
    "race": RACE,
    "skin_tone": SKIN_TONE,
}

COLUMNS: tuple[str, ...] = (
    "sample_id",
    "patient_id",
    "split",
    "image",
    "finding",
    "labels",
    "sex",
    "age",
    "age_group",
    "race",
    "skin_tone",
    "source",
)

FEATURES = datasets.Features(
    {
        "sample_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "split": datasets.Value("string"),
        "image": datasets.Image(),
        "finding": datasets.Value("string"),
        "labels": datasets.Sequence(datasets.Value("string")),
        "sex": datasets.Value("string"),
        "age": datasets.Value("float32"),
        "age_group": datasets.Value("string"),
        "race": datasets.Value("string"),
        "skin_tone": datasets.Value("string"),
        "source": datasets.Value("string"),
    }
)

# Vocabulary of each categorical column; None is always allowed and means "unknown".
VOCABULARIES: Mapping[str, tuple[str, ...]] = {
    "split": SPLITS,
    "finding": FINDINGS,
    **ATTRIBUTES,
}


class SchemaError(ValueError):
    """A sample table does not follow the standard schema; the message names what and where."""


def age_to_group(age: float | None) -> str | None:
    """Map an age in years to its :data:`AGE_GROUPS` bin; ``None`` stays ``None``.

    A NaN or negative age is bad input, not a missing value: loaders must turn their own
    missing-age codes (CheXpert's 0, blanks, ``N/A``) into ``None`` before calling this.
    """
    if age is None:
        return None
    age = float(age)
    if math.isnan(age) or age < 0:
        raise SchemaError(f"age must be a non-negative number of years or None, got {age!r}")
    for edge, group in zip(AGE_BIN_EDGES, AGE_GROUPS, strict=False):
        if age < edge:
            return group
    return AGE_GROUPS[-1]


def check_value(column: str, value: object, *, where: str = "") -> None:
    """Raise :class:`SchemaError` unless ``value`` is ``None`` or in ``column``'s vocabulary."""
    vocab = VOCABULARIES.get(column)
    if vocab is None or value is None or value in vocab:
        return
    loc = f" ({where})" if where else ""
    raise SchemaError(
        f"unknown {column} value {value!r}{loc}; expected one of {', '.join(vocab)} or None"
    )


def validate_rows(rows: Iterable[Mapping[str, object]], *, source: str = "") -> int:
    """Check rows (dicts, with or without ``image``) against the schema; return their number.

    Checks that every column is present, every categorical value is in its vocabulary,
    ``age_group`` agrees with ``age``, and ``labels`` holds known findings.
    """
    n = 0
    for i, row in enumerate(rows):
        where = f"{source} row {i}" if source else f"row {i}"
        missing = [c for c in COLUMNS if c != "image" and c not in row]
        if missing:
            raise SchemaError(f"{where}: missing column(s) {', '.join(missing)}")
        for column in VOCABULARIES:
            check_value(column, row[column], where=where)
        for label in row["labels"] or ():
            check_value("finding", label, where=f"{where}, labels")
        if row["age"] is not None and row["age_group"] != age_to_group(row["age"]):
            raise SchemaError(
                f"{where}: age_group {row['age_group']!r} does not match age {row['age']!r}"
            )
        if not row["sample_id"] or not row["patient_id"]:
            raise SchemaError(f"{where}: sample_id and patient_id must be non-empty")
        n += 1
    return n


def validate_dataset(ds: datasets.Dataset, *, source: str = "") -> None:
    """Check a Dataset's columns and values against the schema (images are not decoded)."""
    missing = [c for c in COLUMNS if c not in ds.column_names]
    if missing:
        raise SchemaError(
            f"{source or 'dataset'}: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(COLUMNS)}"
        )
    validate_rows(ds.remove_columns("image"), source=source)
    ids = ds["sample_id"]
    if len(set(ids)) != len(ids):
        raise SchemaError(f"{source or 'dataset'}: sample_id values are not unique")


def empty_dataset() -> datasets.Dataset:
    """A Dataset with the standard features and no rows."""
    return datasets.Dataset.from_dict({c: [] for c in COLUMNS}, features=FEATURES)
