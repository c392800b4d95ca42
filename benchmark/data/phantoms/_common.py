"""The helpers behind :class:`~.base.Phantom`: seeded streams, argument checks, cache keys,
PNG encoding, rows -> Dataset, and the memory + disk cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ...schema import COLUMNS, FEATURES, SCHEMA_VERSION, derive_attributes, fill_optional

_MEMORY_MAX = 16
MEMORY: dict[tuple[str, str], datasets.Dataset] = {}


def seed_rng(seed: int, stream: str) -> np.random.Generator:
    """The generator of one named random stream of a seed (streams are independent)."""
    tag = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:4], "big")
    return np.random.default_rng([int(seed), tag])


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is ``None`` or in ``choices``."""
    if value is not None and value not in choices:
        shown = ", ".join(str(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}; expected one of {shown}")


def phantom_cache_key(phantom: str, version: str, kind: str, **config: object) -> str:
    """sha256 of everything a cached phantom dataset depends on: the phantom's name and
    version, :data:`benchmark.schema.SCHEMA_VERSION`, the kind (``generate`` / ``reference``)
    and every argument or calibration input in ``config`` (JSON-serialisable)."""
    payload = {"phantom": phantom, "kind": kind, "version": version, "schema": SCHEMA_VERSION,
               **config}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def stable_uniform(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by ``parts`` (sha256 of their repr): for deterministic
    choices that must not consume a sampler's random stream (e.g. in ``majority_phenotype``)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def png_image(array: np.ndarray) -> dict[str, object]:
    """An image cell (PNG bytes, fast compression) for a uint8 (H, W) or (H, W, 3) array."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return {"bytes": buf.getvalue(), "path": None}


def params_to_dataset(
    params: Sequence[Any],
    splits: Sequence[str],
    *,
    image_size: int,
    render: Callable[[Any, int], np.ndarray],
    attributes: Callable[[Any], Mapping[str, object]],
    source: str,
    render_mask: Callable[[Any, int], np.ndarray] | None = None,
) -> datasets.Dataset:
    """Render ``params`` into a standard-schema Dataset.

    Each parameter object has ``sample_id``, ``patient_id`` and ``finding``; ``attributes(p)``
    gives its base attributes ``sex``, ``age``, ``race``, ``skin_tone`` and ``bmi`` (None where
    unknown; any missing key is None). ``render_mask(p, image_size)``, when given, renders the
    row's segmentation mask (uint8 labels) into ``mask``. Derived columns (``age_group``,
    ``age_band``, ``skin_tone_group``, ``bmi_class``) come from
    :func:`benchmark.schema.derive_attributes`. Cache keys must include
    :data:`benchmark.schema.SCHEMA_VERSION`.
    """
    base = ("sex", "age", "race", "skin_tone", "bmi")
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    with tqdm(total=len(params), desc=source, unit="img", leave=False,
              disable=True if len(params) < 500 else None) as bar:
        for p, split in zip(params, splits, strict=True):
            rows["sample_id"].append(p.sample_id)
            rows["patient_id"].append(p.patient_id)
            rows["split"].append(split)
            rows["image"].append(png_image(render(p, image_size)))
            rows["finding"].append(p.finding)
            rows["labels"].append([p.finding])
            attrs = dict(attributes(p))
            unknown = set(attrs) - set(base)
            if unknown:
                raise ValueError(f"{source}: unexpected attribute(s) {sorted(unknown)}")
            values = {c: attrs.get(c) for c in base}
            values.update(derive_attributes(values))
            for column, value in values.items():
                rows[column].append(value)
            rows["mask"].append(
                png_image(render_mask(p, image_size)) if render_mask is not None else None)
            rows["source"].append(source)
            bar.update()
    return datasets.Dataset.from_dict(fill_optional(rows), features=FEATURES)


def cache_root() -> Path:
    """``$FAIRSYNTH_CACHE/phantoms`` (default ``~/.cache/fairsynth-bench/phantoms``)."""
    root = os.environ.get("FAIRSYNTH_CACHE", "~/.cache/fairsynth-bench")
    return Path(root).expanduser() / "phantoms"


def cached_dataset(key: str, build: Callable[[], datasets.Dataset]) -> datasets.Dataset:
    """``build()``'s Dataset, cached in memory and under :func:`cache_root` ``/<key>/``.

    The disk copy is written to a temporary sibling folder and renamed into place, so a killed
    process never leaves a half-written cache entry that looks complete.
    """
    root = str(cache_root())
    hit = MEMORY.get((root, key))
    if hit is not None:
        return hit
    final = Path(root) / key
    if not (final / "dataset_info.json").is_file():
        ds = build()
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{key}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            ds.save_to_disk(str(tmp))
            try:
                os.replace(tmp, final)
            except OSError:  # another process finished first: keep its copy
                if not (final / "dataset_info.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    ds = datasets.Dataset.load_from_disk(str(final))
    if len(MEMORY) >= _MEMORY_MAX:
        MEMORY.pop(next(iter(MEMORY)))
    MEMORY[(root, key)] = ds
    return ds
