"""Content digests and DONE markers that cannot go stale.

A finished stage of a run leaves a DONE marker beside its output. A marker certifies *content*,
not only the config that asked for it: it holds the run's config hash, the sha256 of every file
of the output it certifies, and the digests of the inputs the output was made from (for the
synthetic folder: the fitted generator's files). On resume the marker is checked against the
files on disk; any difference (a replaced image, a truncated checkpoint, a refitted model, a
marker written by an older version) makes the stage run again, and the reason is logged in one
line. A marker is written last and atomically, so a killed stage never looks finished.

:func:`module_digest` hashes model weights (name, dtype, shape and bytes of every tensor) for
cache keys of work derived from a model, e.g. the sample shards of a diffusion model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MARKER_VERSION = 1
_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree_digests(root: str | Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every regular file under ``root`` (a file ``root``
    gives one entry, its own name). Hidden temporary files (``.*.tmp*``) are left out."""
    root = Path(root)
    if root.is_file():
        return {root.name: file_sha256(root)}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not (p.name.startswith(".") and ".tmp" in p.name):
            out[p.relative_to(root).as_posix()] = file_sha256(p)
    return out


def digest_of(digests: Mapping[str, str]) -> str:
    """One sha256 over a ``{name: digest}`` mapping (order-independent)."""
    return hashlib.sha256(json.dumps(dict(sorted(digests.items()))).encode()).hexdigest()


def module_digest(*modules: Any) -> str:
    """sha256 over ``modules`` (``torch.nn.Module`` or ``None``, skipped): each module's class
    name, then every state-dict tensor's name, dtype, shape and exact bytes, in order. Two
    models with the same weights give the same digest; any changed weight changes it."""
    import torch

    h = hashlib.sha256()
    for i, m in enumerate(modules):
        if m is None:
            continue
        h.update(f"{i}:{type(m).__name__}".encode())
        for name, t in m.state_dict().items():
            t = t.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype's bytes
    return h.hexdigest()


def write_marker(marker: str | Path, *, config_hash: str, output: str | Path,
                 inputs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write ``marker`` certifying the files under ``output`` (their sha256), the run's
    ``config_hash`` and the ``inputs`` digests; atomically. Returns what was written."""
    from .results import write_json_atomic

    body = {"marker_version": MARKER_VERSION, "config_hash": config_hash,
            "files": tree_digests(output), "inputs": dict(inputs or {})}
    write_json_atomic(marker, body)
    return body


def check_marker(marker: str | Path, *, config_hash: str, output: str | Path,
                 inputs: Mapping[str, str] | None = None) -> str | None:
    """``None`` when ``marker`` certifies exactly the current files under ``output`` for this
    ``config_hash`` and ``inputs``; otherwise one line saying why not (no marker, another
    config, an input changed, a file missing, added or changed, an unreadable marker)."""
    marker, output = Path(marker), Path(output)
    if not marker.is_file():
        return f"{marker.name} is missing"
    try:
        text = marker.read_text()
        if not text.lstrip().startswith("{"):  # before content hashes: the config hash alone
            return f"{marker} was written by another version of the benchmark"
        body = json.loads(text)
    except (OSError, ValueError) as e:
        return f"{marker} is unreadable ({e.__class__.__name__})"
    if not isinstance(body, dict) or body.get("marker_version") != MARKER_VERSION:
        return f"{marker} was written by another version of the benchmark"
    if body.get("config_hash") != config_hash:
        return f"{marker} certifies another config"
    want_inputs = dict(inputs or {})
    if body.get("inputs") != want_inputs:
        changed = sorted(k for k in set(want_inputs) | set(body.get("inputs") or {})
                         if want_inputs.get(k) != (body.get("inputs") or {}).get(k))
        return f"{marker}: its inputs changed since it was written ({', '.join(changed)})"
    if not output.exists():
        return f"{output} is missing"
    files = body.get("files") or {}
    now = tree_digests(output)
    return _first_difference(output, files, now)


def _first_difference(output: Path, then: Mapping[str, str], now: Mapping[str, str]
                      ) -> str | None:
    missing = sorted(set(then) - set(now))
    if missing:
        return (f"{output / missing[0]} is missing "
                f"({len(missing)} file(s) gone since it was written)")
    added = sorted(set(now) - set(then))
    if added:
        return f"{output / added[0]} was added after the stage finished"
    changed = sorted(k for k in then if then[k] != now[k])
    if changed:
        return (f"{output / changed[0]} changed since it was written "
                f"({len(changed)} file(s) differ)")
    return None


def certified_digest(marker: str | Path) -> str:
    """One digest of the files a marker certifies (read from the marker, so call it after
    :func:`check_marker` passed or right after :func:`write_marker`)."""
    return digest_of(json.loads(Path(marker).read_text())["files"])


def file_damage(path: str | Path) -> str | None:
    """One line saying why the file at ``path`` is damaged (truncated, unparsable), or
    ``None`` when it reads as its format says; a folder is checked file by file.

    Cheap structural checks by extension, none of which loads tensors: ``.json`` parses;
    ``.safetensors``: its header parses and the file is as long as the header's offsets say;
    ``.npy``: its header parses and the file holds every element; ``.bin``/``.pt``/``.pth``/
    ``.pkl`` (``torch.save`` zip archives, as accelerate writes them): the zip directory is
    intact. Other files are only checked to be readable.
    """
    import zipfile

    import numpy as np

    path = Path(path)
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and (why := file_damage(p)) is not None:
                return why
        return None
    try:
        size = path.stat().st_size
        suffix = path.suffix.lower()
        if suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".safetensors":
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if size < 8 + n:
                    return f"{path} is truncated (header of {n} bytes, file of {size})"
                header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                      default=0)
            if size != 8 + n + end:
                return f"{path} is truncated ({size} bytes, expected {8 + n + end})"
        elif suffix == ".npy":
            np.load(path, mmap_mode="r", allow_pickle=False)  # checks the length too
        elif suffix in (".bin", ".pt", ".pth", ".pkl"):
            if not zipfile.is_zipfile(path):
                return f"{path} is truncated or not a torch.save archive"
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():  # every member must lie within the file
                    if info.header_offset + info.compress_size > size:
                        return f"{path} is truncated (member {info.filename})"
        else:
            with open(path, "rb") as f:
                f.read(1)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
        return f"{path} is damaged ({' '.join(str(err).split())[:120]})"
    return None
