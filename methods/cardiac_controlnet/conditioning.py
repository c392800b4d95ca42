"""The cardiac method's two conditions: the metadata prompt and the stacked mask image.

Prompt (Skorupko et al.; ``cardioai/create_diff_dataset.py::generate_prompt`` of
github.com/faildeny/debiasing-cardiac-mri):

    "{Sex}, age in {decade}0s, {BMI class} BMI, {condition}"
    e.g. "Female, age in 70s, overweight BMI, healthy"

BMI classes are the WHO classes of the schema's ``bmi_class`` (< 18.5 underweight, < 25
normal, < 30 overweight, else obese, as the code's thresholds); the decade is the age's
(``age_decade``: 63 -> "60s"); the condition is ``healthy`` for ``no_finding`` and the
finding's words otherwise (``heart failure``). A clause whose value is unknown is left out
(our rule; the code assumes complete UK Biobank metadata).

Control image: the label masks stacked as RGB ``[M_f, M_o, M_f]`` (uint8 labels 0..3, seen by
the ControlNet as ``label / 255``, not distance maps), with M_f the mask of the row's own frame
and M_o the mask of the same patient's other frame (ED <-> ES). For an ED row this is the
code's ``[ED, ES, ED]``; a patient with one frame (the ED-only ACDC / M&Ms loaders) gives
``[M, M, M]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from benchmark.data.phantoms.cardiac import age_decade

#: How a task class reads in the prompt.
CONDITION_WORDS: Mapping[str, str] = {"no_finding": "healthy"}


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def cardiac_prompt(row: Mapping[str, object], finding: str) -> str:
    """The metadata prompt of a sample (see the module docstring)."""
    parts = []
    if not _missing(row.get("sex")):
        parts.append(str(row["sex"]).capitalize())
    if not _missing(row.get("age")):
        parts.append(f"age in {age_decade(float(row['age']))}")
    if not _missing(row.get("bmi_class")):
        parts.append(f"{row['bmi_class']} BMI")
    parts.append(CONDITION_WORDS.get(finding, finding.replace("_", " ")))
    return ", ".join(parts)


def stacked_mask(own: Image.Image | np.ndarray, other: Image.Image | np.ndarray | None
                 ) -> np.ndarray:
    """The (H, W, 3) uint8 control image ``[own, other, own]`` (``other`` None: ``own``)."""
    a = np.asarray(own.convert("L") if isinstance(own, Image.Image) else own, dtype=np.uint8)
    b = a if other is None else np.asarray(
        other.convert("L") if isinstance(other, Image.Image) else other, dtype=np.uint8)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"stacked mask: the two frames' masks must be 2-D of one shape, got "
                         f"{a.shape} and {b.shape}")
    return np.stack([a, b, a], axis=-1)


def other_frames(sample_ids: Sequence[str], patient_ids: Sequence[str]) -> list[int | None]:
    """For every row, the index of its patient's other row (the other frame), or None when
    the patient has only this row. A patient with more than two rows is an error."""
    by: dict[str, list[int]] = {}
    for i, p in enumerate(patient_ids):
        by.setdefault(p, []).append(i)
    out: list[int | None] = []
    for i, p in enumerate(patient_ids):
        rows = by[p]
        if len(rows) > 2:
            raise ValueError(f"cardiac control: patient {p!r} has {len(rows)} rows "
                             f"({', '.join(sample_ids[j] for j in rows)}); expected an ED and "
                             "at most one ES frame")
        others = [j for j in rows if j != i]
        out.append(others[0] if others else None)
    return out


def stacked_masks(rows_masks: Sequence[Image.Image | None], sample_ids: Sequence[str],
                  patient_ids: Sequence[str]) -> list[np.ndarray]:
    """The stacked control image of every row (``rows_masks``: each row's ``mask``); a row
    without a mask is an error that names it."""
    missing = [s for s, m in zip(sample_ids, rows_masks, strict=True) if m is None]
    if missing:
        raise ValueError(f"cardiac control: {len(missing)} row(s) have no segmentation mask "
                         f"(e.g. {missing[0]}); the method needs the mask column")
    other = other_frames(sample_ids, patient_ids)
    return [stacked_mask(m, rows_masks[o] if o is not None else None)
            for m, o in zip(rows_masks, other, strict=True)]


def clipped_inverse_count_weights(prompts: Sequence[str], min_count: float) -> np.ndarray:
    """Sampler weights ``w_i = min(1 / n(p_i), 1 / min_count) = 1 / max(n(p_i), min_count)``,
    n(p) the number of training rows with prompt p (the code's ``calculate_sample_weights``:
    ``1 / count(prompt)``, clipped at ``1 / (9 * sample_weight_clipping)``, i.e. min_count 90
    for its default clipping 10). The trainer normalises them."""
    if not min_count >= 1:
        raise ValueError(f"min_count must be >= 1, got {min_count!r}")
    counts: dict[str, int] = {}
    for p in prompts:
        counts[p] = counts.get(p, 0) + 1
    return np.array([1.0 / max(counts[p], min_count) for p in prompts], dtype=np.float64)
