"""Validation and verification of a submission folder (``benchmark.submission``).

:func:`validate_submission` rejects, with one :class:`SubmissionError` line naming the
problem: a missing or unparsable ``submission.json`` or record, a schema violation (the
versioned JSON Schemas in ``benchmark/schemas``, checked with ``jsonschema``), another schema
version, fewer than :data:`MIN_SEEDS` seeds or a seed twice, a record that is not the one
the manifest checksums, a record whose config hash is not the hash of its config, records
of mixed tasks, methods, profiles, benchmark versions or datasets, the ``smoke`` profile, an
image or ``metadata.csv`` whose sha256 is not the manifest's, a metric outside its range
(:func:`metric_range`) or not finite, a missing headline metric of the task.

:func:`verify_submission` re-scores each seed's submitted images with the harness
(:func:`benchmark.runner.evaluate_folder`, with the downstream stage when the record has
it) and compares every metric of :func:`benchmark.headline.flatten_metrics`: the entry is
``verified`` only when all match (relative tolerance :data:`RTOL`), else ``self-reported``
with the first metric that differs (or why it could not be re-scored).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from benchmark.headline import flatten_metrics
from benchmark.markers import file_sha256, tree_digests
from benchmark.results import SCHEMA_VERSION, config_hash, schema_problem
from benchmark.submission import MANIFEST, SUBMISSION_VERSION

MIN_SEEDS = 3
RTOL = 1e-6
ATOL = 1e-9
VERIFIED, SELF_REPORTED = "verified", "self-reported"


class SubmissionError(ValueError):
    """A submission is rejected; the message is the one line that says why."""


def metric_range(key: str) -> tuple[float, float]:
    """The closed range ``(low, high)`` of a metric key of
    :func:`benchmark.headline.flatten_metrics`.

    Probabilities and rates are in [0, 1]: precision, recall, coverage (Naeem et al., 2020),
    adherence, accuracy, AUC, worst-group scores, DP / EO / equalised-odds differences and
    the equity-scaled ES-ACC / ES-AUC (``acc / (1 + sum |acc_g - acc|)``, Luo et al., 2024).
    Distances and their fairness summaries (FID, FD in any space, their per-group values,
    variance, gap and ES forms), density and NAR are >= 0. KID / KD (the unbiased MMD^2
    estimate can be negative) are unbounded.
    """
    section, _, rest = key.partition(".")
    if section == "downstream":
        name = rest.split(".", 1)[1].split("[")[0]
        return (0.0, math.inf) if name == "nar" else (0.0, 1.0)
    name = rest.split("[")[0].removesuffix("_by_group")
    if name.startswith(("kid", "kd_")):
        return (-math.inf, math.inf)
    if name.startswith(("precision", "recall", "coverage")) or "adherence" in name:
        return (0.0, 1.0)
    return (0.0, math.inf)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise SubmissionError(f"{path}: {what} is missing")
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: {what} is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise SubmissionError(f"{path}: {what} is not valid JSON (line {err.lineno} column "
                              f"{err.colno}: {err.msg}; truncated?)") from None


def _check_record(sub: Path, entry: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    path = sub / entry["record"]
    if not path.is_file():
        raise SubmissionError(f"{path}: the record of seed {entry['seed']} is missing")
    if file_sha256(path) != entry["record_sha256"]:
        raise SubmissionError(f"{path}: sha256 does not match the manifest (the record was "
                              "changed after it was submitted)")
    rec = _read_json(path, "the record")
    if not isinstance(rec, dict):
        raise SubmissionError(f"{path}: the record is not a JSON object")
    if rec.get("schema_version") != SCHEMA_VERSION:
        raise SubmissionError(f"{path}: schema_version {rec.get('schema_version')!r}; expected "
                              f"{SCHEMA_VERSION!r}")
    problem = schema_problem(rec, "record")
    if problem is not None:
        raise SubmissionError(f"{path}: does not match the record schema: {problem}")
    if config_hash(rec["config"]) != rec["config_hash"]:
        raise SubmissionError(f"{path}: config_hash {rec['config_hash'][:12]}... is not the hash "
                              "of the record's config")
    cfg = rec["config"]
    for field, mine, theirs in (("task", rec["task"], manifest["task"]),
                                ("method", rec["method"], manifest["method"]),
                                ("profile", rec["profile"], manifest["profile"]),
                                ("benchmark version", rec["benchmark"], manifest["benchmark"])):
        if mine != theirs:
            raise SubmissionError(f"{path}: mixed {field}s: this record has {mine!r}, the "
                                  f"submission {theirs!r}")
    for field, inside, outside in (("task", cfg["task"]["name"], rec["task"]),
                                   ("method", cfg["method"]["name"], rec["method"]),
                                   ("profile", cfg["profile"]["name"], rec["profile"]),
                                   ("seed", cfg["seed"], rec["seed"]),
                                   ("code version", cfg["code"], rec["benchmark"])):
        if inside != outside:
            raise SubmissionError(f"{path}: the record's {field} {outside!r} is not its "
                                  f"config's {inside!r}")
    for field in ("seed", "config_hash", "dataset_fingerprint"):
        if rec[field] != entry[field]:
            raise SubmissionError(f"{path}: {field} {rec[field]!r} is not the manifest's "
                                  f"{entry[field]!r}")
    return rec


def _check_images(sub: Path, entry: dict[str, Any], rec: dict[str, Any]) -> None:
    syn = entry["synthetic"]
    if rec["counts"].get("synthetic") != len(syn["files"]):
        raise SubmissionError(f"seed {entry['seed']}: the manifest lists {len(syn['files'])} "
                              f"image(s), the record counts {rec['counts'].get('synthetic')}")
    if not syn["included"]:
        return
    folder = sub / syn["folder"]
    if not folder.is_dir():
        raise SubmissionError(f"{folder}: the images of seed {entry['seed']} are missing (the "
                              "manifest says they are included)")
    now = tree_digests(folder)
    want = {**syn["files"], "metadata.csv": syn["metadata_sha256"]}
    for name in sorted(set(want) | set(now)):
        if name not in now:
            raise SubmissionError(f"{folder / name}: listed in the manifest but missing")
        if name not in want:
            raise SubmissionError(f"{folder / name}: not listed in the manifest")
        if now[name] != want[name]:
            raise SubmissionError(f"{folder / name}: sha256 does not match the manifest")


def _check_metrics(path: Path, rec: dict[str, Any], headline: tuple[str, ...]) -> None:
    flat = flatten_metrics(rec["metrics"])
    for key, value in flat.items():
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or \
                not math.isfinite(value):
            raise SubmissionError(f"{path}: metric {key} is {value!r}; expected a finite number "
                                  "or null")
        lo, hi = metric_range(key)
        if not lo <= value <= hi:
            raise SubmissionError(f"{path}: metric {key} = {value:g} is outside its range "
                                  f"[{lo:g}, {hi:g}]")
    for key in headline:
        if flat.get(key) is None:
            raise SubmissionError(f"{path}: headline metric {key} of task {rec['task']} is "
                                  "missing")


def validate_submission(submission: str | Path, *, allow_smoke: bool = False
                        ) -> dict[str, Any]:
    """Check a submission folder (see the module docstring); returns
    ``{"manifest", "records": {seed: record}}`` or raises :class:`SubmissionError`.
    ``allow_smoke`` admits the ``smoke`` profile: for tests of this validator only, the
    leaderboard never takes smoke-size numbers (the command line has no such switch)."""
    from benchmark.profiles import PROFILES
    from benchmark.registry import UnknownNameError
    from benchmark.tasks import TASKS

    sub = Path(submission)
    if not sub.is_dir():
        raise SubmissionError(f"{sub}: not a folder; expected a submission folder "
                              "(python -m benchmark submit)")
    manifest = _read_json(sub / MANIFEST, MANIFEST)
    if not isinstance(manifest, dict):
        raise SubmissionError(f"{sub / MANIFEST}: not a JSON object")
    if manifest.get("submission_version") != SUBMISSION_VERSION:
        raise SubmissionError(f"{sub / MANIFEST}: submission_version "
                              f"{manifest.get('submission_version')!r}; expected "
                              f"{SUBMISSION_VERSION!r}")
    problem = schema_problem(manifest, "submission")
    if problem is not None:
        raise SubmissionError(f"{sub / MANIFEST}: does not match the submission schema: "
                              f"{problem}")
    if manifest["record_schema_version"] != SCHEMA_VERSION:
        raise SubmissionError(f"{sub / MANIFEST}: record_schema_version "
                              f"{manifest['record_schema_version']!r}; expected "
                              f"{SCHEMA_VERSION!r}")
    seeds = [e["seed"] for e in manifest["entries"]]
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise SubmissionError(f"{sub / MANIFEST}: seed {dup[0]} appears more than once")
    if len(seeds) < MIN_SEEDS:
        raise SubmissionError(f"{sub / MANIFEST}: {len(seeds)} seed(s) "
                              f"({', '.join(map(str, sorted(seeds)))}); at least {MIN_SEEDS} "
                              "distinct seeds are required")
    try:
        task = TASKS.get(manifest["task"])
        PROFILES.get(manifest["profile"])
    except UnknownNameError as err:
        raise SubmissionError(f"{sub / MANIFEST}: {err}") from None
    if manifest["profile"] == "smoke" and not allow_smoke:
        raise SubmissionError(f"{sub / MANIFEST}: profile 'smoke' is for tests; submit runs of "
                              "the cpu, gpu or paper profile")
    records: dict[int, dict[str, Any]] = {}
    for entry in manifest["entries"]:
        rec = _check_record(sub, entry, manifest)
        _check_images(sub, entry, rec)
        _check_metrics(sub / entry["record"], rec, task.headline_metrics)
        records[entry["seed"]] = rec
    prints = {r["dataset_fingerprint"] for r in records.values()}
    if len(prints) > 1:
        raise SubmissionError(f"{sub / MANIFEST}: the records were scored on {len(prints)} "
                              "different datasets (dataset fingerprints differ)")
    return {"manifest": manifest, "records": records}


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)


def verify_submission(submission: str | Path, *, root: str | Path | None = None,
                      allow_smoke: bool = False, progress: bool = False) -> dict[str, Any]:
    """Validate, then re-score every seed's images; returns ``{"status": "verified" |
    "self-reported", "reason": None | one line, "seeds": {seed: {"compared": n,
    "differs": [keys]}}}``. Raises :class:`SubmissionError` when validation fails."""
    from benchmark.runner import evaluate_folder

    checked = validate_submission(submission, allow_smoke=allow_smoke)
    manifest, sub = checked["manifest"], Path(submission)
    out: dict[str, Any] = {"status": VERIFIED, "reason": None, "seeds": {}}
    for entry in manifest["entries"]:
        seed, rec = entry["seed"], checked["records"][entry["seed"]]
        if not entry["synthetic"]["included"]:
            out.update(status=SELF_REPORTED,
                       reason=f"seed {seed}: images not included (submit without --no-images)")
            continue
        with tempfile.TemporaryDirectory(prefix="fairsynth-verify-") as tmp:
            try:
                again = evaluate_folder(task=manifest["task"],
                                        synthetic_dir=sub / entry["synthetic"]["folder"],
                                        profile=manifest["profile"], seed=seed, out=tmp,
                                        root=root, progress=progress,
                                        downstream="downstream" in rec["metrics"])
            except (ValueError, OSError) as err:
                out["seeds"][seed] = {"compared": 0, "differs": []}
                out.update(status=SELF_REPORTED, reason=f"seed {seed}: could not be re-scored "
                           f"({' '.join(str(err).split())[:200]})")
                continue
        mine, theirs = flatten_metrics(again["metrics"]), flatten_metrics(rec["metrics"])
        differs = sorted(k for k in set(mine) | set(theirs)
                         if not _same(mine.get(k), theirs.get(k)))
        out["seeds"][seed] = {"compared": len(set(mine) | set(theirs)), "differs": differs}
        if differs and out["reason"] is None:
            k = differs[0]
            out.update(status=SELF_REPORTED,
                       reason=f"seed {seed}: {k} re-scores to {mine.get(k)!r}, the record says "
                              f"{theirs.get(k)!r} ({len(differs)} metric(s) differ)")
    return out


VERIFICATION = "verification.json"


def write_verification(submission: str | Path, result: dict[str, Any]) -> Path:
    """Record the outcome of :func:`verify_submission` beside the submission
    (``verification.json``, atomically), bound to the manifest's sha256: an edited manifest
    makes it void (:func:`verification_status`)."""
    from benchmark.results import write_json_atomic

    sub = Path(submission)
    body = {"manifest_sha256": file_sha256(sub / MANIFEST), "status": result["status"],
            "reason": result["reason"],
            "seeds": {str(k): v for k, v in result.get("seeds", {}).items()}}
    return write_json_atomic(sub / VERIFICATION, body)


def verification_status(submission: str | Path) -> tuple[str, str | None]:
    """``(status, reason)`` of a validated submission: ``verified`` only when its
    ``verification.json`` says so for the current manifest; otherwise self-reported."""
    sub = Path(submission)
    try:
        body = json.loads((sub / VERIFICATION).read_text())
    except (OSError, ValueError):
        return SELF_REPORTED, "not verified (python -m leaderboard validate re-scores it)"
    if body.get("manifest_sha256") != file_sha256(sub / MANIFEST):
        return SELF_REPORTED, "the manifest changed after verification"
    return (VERIFIED, None) if body.get("status") == VERIFIED else \
        (SELF_REPORTED, body.get("reason"))
