"""Counts of a dataset in the standard schema: what ``python -m benchmark datasets --summary``
prints, so a user can check a local copy against its data card in one command."""

from __future__ import annotations

from collections import Counter
from typing import Any

import datasets

from ..grouping import UNKNOWN
from ..schema import ATTRIBUTES, SPLITS


def _counts(values: list[object]) -> dict[str, int]:
    c = Counter(UNKNOWN if v is None else str(v) for v in values)
    return dict(sorted(c.items(), key=lambda kv: (kv[0] == UNKNOWN, kv[0])))


def summarize(ds: datasets.Dataset) -> dict[str, Any]:
    """Number of samples and patients, and counts per split, finding, label and attribute value
    (``unknown`` for None), overall and per split."""
    cols = ds.select_columns(["patient_id", "split", "finding", "labels", *ATTRIBUTES]).to_dict()
    splits = [s for s in SPLITS if s in set(cols["split"])]
    out: dict[str, Any] = {
        "samples": len(ds),
        "patients": len(set(cols["patient_id"])),
        "split": _counts(cols["split"]),
        "patients_per_split": {s: len({p for p, t in zip(cols["patient_id"], cols["split"],
                                                         strict=True) if t == s})
                               for s in splits},
        "finding": _counts(cols["finding"]),
        "labels": _counts([x for labels in cols["labels"] for x in (labels or [])]),
        "attributes": {a: _counts(cols[a]) for a in ATTRIBUTES},
        "by_split": {},
    }
    for s in splits:
        idx = [i for i, t in enumerate(cols["split"]) if t == s]
        out["by_split"][s] = {
            "finding": _counts([cols["finding"][i] for i in idx]),
            "attributes": {a: _counts([cols[a][i] for i in idx]) for a in ATTRIBUTES},
        }
    return out


def format_summary(name: str, summary: dict[str, Any]) -> str:
    """The summary as readable lines (attributes that are unknown for every row are left out)."""
    def line(label: str, counts: dict[str, int]) -> str:
        return f"  {label:<16} " + ", ".join(f"{k} {v}" for k, v in counts.items())

    lines = [f"{name}: {summary['samples']} samples, {summary['patients']} patients",
             line("split", summary["split"]),
             line("patients/split", summary["patients_per_split"]),
             line("finding", summary["finding"])]
    if summary["labels"]:
        lines.append(line("labels", summary["labels"]))
    for attr, counts in summary["attributes"].items():
        if list(counts) != [UNKNOWN]:
            lines.append(line(attr, counts))
    for split, part in summary["by_split"].items():
        lines.append(f"  [{split}]")
        lines.append("  " + line("finding", part["finding"]))
        for attr, counts in part["attributes"].items():
            if list(counts) != [UNKNOWN]:
                lines.append("  " + line(attr, counts))
    return "\n".join(lines)
