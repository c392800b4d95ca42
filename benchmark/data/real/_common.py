"""What every real-dataset loader shares: finding files under a root, reading metadata tables
with a header check, counting dropped rows, image checks, and the shipped split files.

Every error here is one line that names the file, the column or the value, and what was
expected: loaders raise :class:`FileNotFoundError` for a missing root, metadata file or image
and :class:`DataLayoutError` (a :class:`benchmark.schema.SchemaError`, so a ``ValueError``) for a
metadata table that does not look like the one the publisher ships.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import datasets
import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ...schema import COLUMNS, DERIVED, FEATURES, SPLITS, SchemaError
from ...schema import column as column_values
from ..splits import split_of
from ..validate import check_inside, csv_header, duplicate_names

log = logging.getLogger("benchmark.data.real")

#: How images are checked at load time: "none" (trust the table), "exists" (every image file
#: is there: one stat per row) or "decode" (every image opens and decodes: slow, a --verify).
IMAGE_CHECKS: tuple[str, ...] = ("none", "exists", "decode")

SPLIT_FORMAT = "fairsynth-split/1"


class DataLayoutError(SchemaError):
    """A local copy does not look like the one its publisher ships (header, values, layout)."""


# --------------------------------------------------------------------------------- files


def require_root(root: str | os.PathLike | None, dataset: str, card: str) -> Path:
    """``root`` as a Path; one clear error when it is missing or not a folder."""
    if root is None:
        raise FileNotFoundError(f"{dataset}: no root given; pass --root with your local copy "
                                f"(layout: data_cards/{card})")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: root {path} is not a folder (layout: "
                                f"data_cards/{card})")
    return path


def find_file(root: Path, candidates: Sequence[str], *, dataset: str, what: str,
              required: bool = True) -> Path | None:
    """The first of ``candidates`` (paths or glob patterns relative to ``root``) that exists.

    Raises :class:`FileNotFoundError` naming every candidate when none exists and
    ``required``; returns ``None`` otherwise.
    """
    for pattern in candidates:
        if any(ch in pattern for ch in "*?["):
            hits = sorted(p for p in root.glob(pattern) if p.is_file())
            if hits:
                return hits[0]
        elif (root / pattern).is_file():
            return root / pattern
    if required:
        raise FileNotFoundError(
            f"{dataset}: {what} not found under {root}; looked for {', '.join(candidates)}")
    return None


def find_named(root: Path, names: Sequence[str], *, max_depth: int = 3,
               parent_names: Sequence[str] | None = None,
               skip: Sequence[str] = ("files", "images", "train", "valid")) -> Path | None:
    """The first file named one of ``names`` at most ``max_depth`` folders below ``root``
    (breadth first, sorted, so the shallowest and then alphabetically first wins).

    ``parent_names``: only files whose folder has one of these names count. Folders in
    ``skip`` (image trees with many thousands of entries) are not entered.
    """
    level = [root]
    for _ in range(max_depth + 1):
        nxt = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.is_file() and entry.name in names and (
                        parent_names is None or folder.name in parent_names):
                    return Path(entry.path)
            nxt += [Path(e.path) for e in entries if e.is_dir() and e.name not in skip]
        level = nxt
    return None


# --------------------------------------------------------------------------------- tables


def read_table(path: Path, *, dataset: str, required: Sequence[str],
               sheet: str | int | None = None) -> pd.DataFrame:
    """Read a metadata table (``.csv``, ``.csv.gz``, ``.xlsx``, ``.xls``) with every cell as a
    string (blanks are ``""``) and check that it has the ``required`` columns.

    Column names are stripped of surrounding spaces (the publishers' spreadsheets have some).
    """
    name = path.name.lower()
    try:
        if name.endswith((".xlsx", ".xls")):
            df = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=str,
                               keep_default_na=False)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding_errors="strict")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError, OSError) as err:
        raise DataLayoutError(f"{dataset}: cannot read {path} as a table ({err})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if not name.endswith((".xlsx", ".xls", ".gz")):  # pandas renames a repeated name to "x.1"
        dup = duplicate_names(csv_header(path))
        if dup:
            raise DataLayoutError(f"{dataset}: {path}: column {dup[0]!r} occurs more than once "
                                  "in the header; expected unique column names")
    check_header(df, path, dataset=dataset, required=required)
    if len(df) == 0:
        raise DataLayoutError(f"{dataset}: {path} has a header but no rows; expected the "
                              "publisher's table with one row per image")
    return df


def check_header(df: pd.DataFrame, path: Path, *, dataset: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataLayoutError(
            f"{dataset}: unexpected header in {path}: missing {', '.join(missing)}; expected "
            f"columns {', '.join(required)}; found {', '.join(map(str, df.columns))}")


def cell(value: object, missing: Iterable[str] = ()) -> str | None:
    """A table cell as a stripped string, or ``None`` for blank / NaN / a ``missing`` token."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text or text in missing:
        return None
    return text


def number(value: object, *, where: str, missing: Iterable[str] = ()) -> float | None:
    """A numeric cell as a float, ``None`` for blank or a ``missing`` token; anything else that is
    not a number is an error naming ``where``."""
    text = cell(value, missing)
    if text is None:
        return None
    try:
        out = float(text)
    except ValueError:
        raise DataLayoutError(f"{where}: {text!r} is not a number") from None
    if math.isnan(out):
        return None
    return out


class DropCounter:
    """Counts rows dropped (by reason) and values mapped to unknown, and logs them once."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.dropped: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] += n

    def unknown_value(self, what: str, n: int = 1) -> None:
        self.unknown[what] += n

    def report(self, n_in: int, n_out: int) -> None:
        parts = "; ".join(f"{r}: {n}" for r, n in self.dropped.most_common())
        log.info("%s: kept %d of %d rows%s", self.dataset, n_out, n_in,
                 f" (dropped {parts})" if parts else "")
        if self.unknown:
            parts = "; ".join(f"{w}: {n}" for w, n in self.unknown.most_common())
            log.info("%s: values mapped to unknown (None): %s", self.dataset, parts)


# --------------------------------------------------------------------------------- images


def check_images(paths: Sequence[str], mode: str, *, dataset: str,
                 root: str | os.PathLike | None = None) -> None:
    """Check the image files of a table: see :data:`IMAGE_CHECKS`. With ``root``, every path
    must first resolve inside it (nothing outside the root is stat'ed or opened)."""
    if mode not in IMAGE_CHECKS:
        raise ValueError(f"{dataset}: check_images={mode!r}; expected one of "
                         f"{', '.join(IMAGE_CHECKS)}")
    if root is not None:
        check_inside(root, [p for p in paths if isinstance(p, str | os.PathLike)],
                     dataset=dataset)
    if mode == "none":
        return
    missing = [p for p in tqdm(paths, desc=f"{dataset}: checking images", leave=False,
                               disable=len(paths) < 5000) if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: {len(missing)} of {len(paths)} image files are missing, first: "
            f"{missing[0]} (is the root the folder the publisher ships?)")
    if mode == "decode":
        for p in tqdm(paths, desc=f"{dataset}: decoding images", leave=False):
            decode_check(p)


def decode_check(path: str | os.PathLike) -> None:
    """Open and fully decode one image file; an unreadable one raises naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataLayoutError(f"cannot read image {path} ({err})") from None


def verify_images(ds: datasets.Dataset, *, progress: bool = True) -> int:
    """Decode every image of ``ds`` (file paths or embedded bytes); an unreadable image raises
    :class:`DataLayoutError` naming its file (or sample id). Returns the number checked."""
    raw = ds.cast_column("image", datasets.Image(decode=False))
    ids = column_values(ds, "sample_id")
    for i, img in enumerate(tqdm(raw["image"], desc="verifying images", disable=not progress,
                                 leave=False)):
        if img is None:
            raise DataLayoutError(f"sample {ids[i]}: no image")
        if img.get("bytes") is not None:
            import io

            try:
                with Image.open(io.BytesIO(img["bytes"])) as im:
                    im.load()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                raise DataLayoutError(f"sample {ids[i]}: cannot read image ({err})") from None
        else:
            decode_check(img["path"])
    return len(ids)


# --------------------------------------------------------------------------------- rows


def new_rows() -> dict[str, list]:
    return {c: [] for c in COLUMNS}


def complete_rows(rows: dict[str, list]) -> dict[str, list]:
    """Fill every column a loader did not append: derived columns from their base values with
    :data:`benchmark.schema.DERIVED` (the one definition), all other columns with ``None``."""
    n = len(rows["sample_id"])
    for column in COLUMNS:
        if column in DERIVED or len(rows[column]) == n:
            continue
        if rows[column]:
            raise ValueError(f"column {column} has {len(rows[column])} values for {n} rows")
        rows[column] = [None] * n
    for column, (base, fn) in DERIVED.items():
        if len(rows[column]) == n:
            continue
        memo: dict[object, object] = {}
        out = []
        for i, v in enumerate(rows[base]):
            if v not in memo:
                try:
                    memo[v] = fn(v) if v is not None else None
                except SchemaError as err:  # name the row (an age of 999, inf, ...)
                    sid = rows["sample_id"][i] if i < len(rows["sample_id"]) else i
                    raise DataLayoutError(f"sample {sid}: {err}") from None
            out.append(memo[v])
        rows[column] = out
    return rows


def _image_cell(value: object) -> object:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str | os.PathLike):
        return {"bytes": None, "path": os.fspath(value)}
    return datasets.Image().encode_example(value)  # a PIL image or an array


def to_dataset(rows: dict[str, list], *, dataset: str,
               root: str | os.PathLike | None = None) -> datasets.Dataset:
    """Rows -> Dataset with the standard features. String image cells stay file paths that
    :class:`datasets.Image` decodes on access (nothing is decoded here).

    ``root``: the local copy the rows were read from; every image and mask file path must
    resolve inside it (:func:`benchmark.data.validate.check_inside`: a table row with
    ``../../outside.jpg`` or a symlink out of the root is refused, naming the path).

    Built as one Arrow table (``datasets``' per-example encoding takes ~15 s for CheXpert's
    223k rows; this takes about a second)."""
    import pyarrow as pa

    complete_rows(rows)
    if root is not None:
        check_inside(root, [v for c in ("image", "mask") for v in rows[c]
                            if isinstance(v, str | os.PathLike)], dataset=dataset)
    ids = rows["sample_id"]
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in Counter(ids).items() if n > 1)
        raise DataLayoutError(f"{dataset}: sample id {dup!r} occurs more than once")
    data = {c: ([_image_cell(v) for v in rows[c]] if c in ("image", "mask") else rows[c])
            for c in COLUMNS}
    table = pa.Table.from_pydict(data, schema=FEATURES.arrow_schema)
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=FEATURES))


# --------------------------------------------------------------------------------- splits


def split_checksum(assignment: Mapping[str, str]) -> str:
    """sha256 of a patient -> split assignment: lines ``<patient>\\t<split>\\n`` sorted by id."""
    h = hashlib.sha256()
    for pid in sorted(assignment):
        h.update(f"{pid}\t{assignment[pid]}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class SplitFile:
    """A shipped split file: patient id -> split, its checksum and how it was made."""

    name: str
    dataset: str
    method: str
    assignment: Mapping[str, str]
    sha256: str

    def counts(self) -> dict[str, int]:
        c = Counter(self.assignment.values())
        return {s: c.get(s, 0) for s in SPLITS}


def _split_dir() -> Path:
    return Path(str(resources.files("benchmark"))) / "data" / "splits"


def split_file_path(name: str) -> Path:
    return _split_dir() / f"{name}.json"


def write_split_file(path: str | os.PathLike, *, dataset: str, method: str,
                     assignment: Mapping[str, str]) -> Path:
    """Write a split file atomically (temporary file, then rename)."""
    bad = {s for s in assignment.values() if s not in SPLITS}
    if bad:
        raise ValueError(f"split file {path}: unknown split(s) {sorted(bad)}; expected {SPLITS}")
    doc = {
        "format": SPLIT_FORMAT,
        "dataset": dataset,
        "method": method,
        "sha256": split_checksum(assignment),
        "counts": {s: sum(v == s for v in assignment.values()) for s in SPLITS},
        "patients": {s: sorted(p for p, v in assignment.items() if v == s) for s in SPLITS},
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    text = json.dumps(doc, indent=0, ensure_ascii=True)
    try:
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no temporary file is left behind
        raise
    return path


def load_split_file(name_or_path: str | os.PathLike) -> SplitFile:
    """Read a split file (a shipped name such as ``"chexpert"`` or a path) and verify its
    checksum; a damaged file raises naming it."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = split_file_path(str(name_or_path))
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataLayoutError(f"split file {path} is not valid JSON ({err})") from None
    if doc.get("format") != SPLIT_FORMAT:
        raise DataLayoutError(f"split file {path}: format {doc.get('format')!r}, expected "
                              f"{SPLIT_FORMAT!r}")
    assignment: dict[str, str] = {}
    for split, ids in doc["patients"].items():
        for pid in ids:
            if pid in assignment:
                raise DataLayoutError(f"split file {path}: patient {pid} is in two splits")
            assignment[pid] = split
    digest = split_checksum(assignment)
    if digest != doc["sha256"]:
        raise DataLayoutError(f"split file {path}: checksum {digest[:12]}... does not match the "
                              f"recorded {doc['sha256'][:12]}... (the file was modified)")
    return SplitFile(name=path.stem, dataset=doc["dataset"], method=doc["method"],
                     assignment=assignment, sha256=digest)


def hash_splits(patient_ids: Iterable[str], salt: str,
                fractions: Mapping[str, float] | None = None) -> dict[str, str]:
    """Patient id -> split by the deterministic patient hash of :mod:`benchmark.data.splits`."""
    kwargs = {"fractions": fractions} if fractions is not None else {}
    return {pid: split_of(pid, salt=salt, **kwargs) for pid in set(patient_ids)}


def apply_split_file(patient_ids: Sequence[str], split_file: SplitFile, *, dataset: str,
                     fallback: Callable[[str], str],
                     present: Iterable[str] | None = None) -> list[str]:
    """The split of each row from the shipped split file, comparing the local patients with it.

    Patients the file does not know get ``fallback(patient_id)``. When the local copy differs
    from the file (patients missing here, or extra here) a warning says so with the counts.
    ``present``: every patient of the local metadata before row filters (default: the
    patients of ``patient_ids``), so a filter (e.g. frontal views only) is not reported as a
    difference.
    """
    local = set(present) if present is not None else set(patient_ids)
    known = split_file.assignment
    extra = sorted(local - known.keys())
    missing = len(known.keys() - local)
    if extra or missing:
        log.warning(
            "%s: local copy differs from the shipped split file %s.json (sha256 %s...): "
            "%d of its %d patients are not here, %d patients here are not in it%s",
            dataset, split_file.name, split_file.sha256[:12], missing, len(known), len(extra),
            f" (assigned by fallback, first: {extra[0]})" if extra else "")
    else:
        log.info("%s: all %d patients match the shipped split file %s.json (sha256 %s...)",
                 dataset, len(local), split_file.name, split_file.sha256[:12])
    extra_set = set(patient_ids) - known.keys()
    cache: dict[str, str] = {}
    out = []
    for pid in patient_ids:
        if pid in extra_set:
            if pid not in cache:
                cache[pid] = fallback(pid)
            out.append(cache[pid])
        else:
            out.append(known[pid])
    return out


def compare_split(local: Mapping[str, str], split_file: SplitFile) -> dict[str, int]:
    """Counts of how a local patient -> split assignment differs from a split file."""
    shared = local.keys() & split_file.assignment.keys()
    return {
        "missing_here": len(split_file.assignment.keys() - local.keys()),
        "extra_here": len(local.keys() - split_file.assignment.keys()),
        "different_split": sum(local[p] != split_file.assignment[p] for p in shared),
    }
