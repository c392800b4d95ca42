"""Leaderboard submissions: finished runs of one method on one task and profile, packaged.

``python -m benchmark submit RUN_DIR... --out SUBMISSION_DIR`` writes::

    SUBMISSION_DIR/
      submission.json          the manifest (schema benchmark/schemas/submission.schema.json):
                               benchmark version and code commit, task, method, profile, and
                               per seed: the record's path and sha256, its config hash, the
                               dataset fingerprint, the sha256 of metadata.csv and of every
                               synthetic image, and whether the images are included
      records/seed<k>.json     each seed's result record, byte for byte
      synthetic/seed<k>/       the seed's synthetic folder (images + metadata.csv), unless
                               --no-images; verification re-scores these

The folder is built in a temporary sibling and renamed into place, so a killed ``submit``
never leaves something that looks like a submission. Checks here are what the submitter can
get wrong by mistake (a run folder without a finished record, runs of different tasks,
profiles, methods or code versions, one seed twice); ``python -m leaderboard validate`` checks
everything again, since a submission can be edited after it is written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .markers import file_sha256, tree_digests
from .results import SCHEMA_VERSION, load_schema, validate_record, write_json_atomic

SUBMISSION_VERSION: str = load_schema("submission")["properties"]["submission_version"]["const"]
MANIFEST = "submission.json"


def find_records(run_dirs: list[str | Path]) -> list[Path]:
    """The ``result.json`` of each run folder; a folder without one is searched below (a
    sweep's ``--out``), leaving out ``evaluation/`` folders (scores of a folder, not runs)."""
    found: list[Path] = []
    for d in map(Path, run_dirs):
        if (d / "result.json").is_file():
            found.append(d / "result.json")
            continue
        below = sorted(p for p in d.rglob("result.json")
                       if "evaluation" not in p.relative_to(d).parts
                       and (p.parent / "synthetic").is_dir())
        if not below:
            raise ValueError(f"{d}: no result.json (a finished run) in it or below it")
        found.extend(below)
    return found


def _one(values: list[Any], what: str) -> Any:
    distinct = sorted({json.dumps(v, sort_keys=True) for v in values})
    if len(distinct) != 1:
        raise ValueError(f"runs of different {what}: {', '.join(distinct)}; a submission holds "
                         "one method on one task and profile, with one benchmark version")
    return values[0]


def make_submission(run_dirs: list[str | Path], out: str | Path, *, images: bool = True
                    ) -> dict[str, Any]:
    """Write the submission of the runs in ``run_dirs`` to ``out`` (see the module
    docstring); returns the manifest."""
    out = Path(out)
    paths = find_records(run_dirs)
    records = []
    for p in paths:
        try:
            rec = json.loads(p.read_text())
            validate_record(rec)
        except ValueError as err:
            raise ValueError(f"{p}: {err}") from None
        records.append((p, rec))
    records.sort(key=lambda pr: pr[1]["seed"])
    seeds = [r["seed"] for _, r in records]
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ValueError(f"seed(s) {', '.join(map(str, dup))} appear in more than one run folder")
    task = _one([r["task"] for _, r in records], "tasks")
    method = _one([r["method"] for _, r in records], "methods")
    profile = _one([r["profile"] for _, r in records], "profiles")
    bench = _one([r["benchmark"] for _, r in records], "benchmark versions")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        entries = []
        for path, rec in records:
            syn = path.parent / "synthetic"
            if not (syn / "metadata.csv").is_file():
                raise ValueError(f"{syn}/metadata.csv is missing; the run's synthetic folder "
                                 "is needed for its checksums")
            files = tree_digests(syn)
            meta = files.pop("metadata.csv")
            name = f"seed{rec['seed']}"
            (tmp / "records").mkdir(exist_ok=True)
            shutil.copyfile(path, tmp / "records" / f"{name}.json")
            if images:
                shutil.copytree(syn, tmp / "synthetic" / name,
                                ignore=shutil.ignore_patterns(".*.tmp*"))
            entries.append({
                "seed": rec["seed"], "record": f"records/{name}.json",
                "record_sha256": file_sha256(path), "config_hash": rec["config_hash"],
                "dataset_fingerprint": rec["dataset_fingerprint"],
                "synthetic": {"folder": f"synthetic/{name}", "included": images,
                              "metadata_sha256": meta, "files": files},
            })
        manifest = {
            "submission_version": SUBMISSION_VERSION, "record_schema_version": SCHEMA_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "benchmark": bench, "task": task, "method": method, "profile": profile,
            "entries": entries,
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        if out.is_dir():
            out.rmdir()  # an empty folder only (the CLI refuses a non-empty one)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
