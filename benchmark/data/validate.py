"""The one validation layer for data coming in from outside: image folders (``metadata.csv``
+ images, :func:`benchmark.data.read_image_folder`) and the real-dataset loaders.

Every check raises :class:`~benchmark.schema.SchemaError` (a ``ValueError``) with one line that
names the file, row, column or value and what was expected; the CLI prints it and exits 2.
What is checked (the README's "What is validated" lists the same):

- **paths confined to the root** (:func:`confined_path`): a relative path in a table may not be
  absolute, may not climb out with ``..``, and may not be (or pass through) a symlink that
  resolves outside the root; nothing outside the root is opened.
- **duplicate paths**: two rows of an image folder pointing at the same file are refused (the
  same image scored twice would silently weight it double).
- **images** (:func:`open_image`): the header is read before any pixel is decoded; more than
  :data:`MAX_IMAGE_PIXELS` pixels (below PIL's decompression-bomb limit) or a side below
  :data:`MIN_IMAGE_SIDE` (SSIM's 11-pixel window) is refused; 16-bit grayscale is *scaled*
  to 8 bits (``v * 255 / 65535``, rounded), not clipped; alpha is dropped, palette / CMYK /
  YCbCr become RGB; floating-point images have no defined range and are refused.
- **tables** (:func:`check_header`): duplicate column names (pandas would silently rename
  the second ``age`` to ``age.1`` and ignore it) and tables without data rows are refused.
- **numeric attributes**: age must be finite and within :data:`benchmark.schema.AGE_RANGE`,
  BMI within :data:`benchmark.schema.BMI_RANGE` (checked where they are derived, in
  :mod:`benchmark.schema`, the one definition).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..metrics.similarity import MS_SSIM_WINDOW
from ..schema import SchemaError

#: The most pixels (width x height) an input image may have: 8192 x 8192, below PIL's
#: decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, 89.5M), so a bomb is refused by
#: us with a clear line before PIL decodes anything.
MAX_IMAGE_PIXELS = 8192 * 8192
#: The smallest image side: SSIM's Gaussian window (11 pixels) must fit.
MIN_IMAGE_SIDE = MS_SSIM_WINDOW

_EIGHT_BIT = ("L", "RGB")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def confined_path(root: str | os.PathLike, rel: str, *, where: str) -> Path:
    """``root / rel`` after checking that it stays inside ``root``.

    Refused (one line naming ``where``): an absolute ``rel``, a ``rel`` whose ``..`` parts
    climb out of ``root``, and a path that resolves (symlinks followed) outside the resolved
    ``root``. Whether the file exists is not checked here.
    """
    text = str(rel)
    if os.path.isabs(text) or text.startswith(("/", "\\")) or (len(text) > 1 and text[1] == ":"):
        raise SchemaError(f"{where}: path {text!r} is absolute; expected a path relative to "
                          f"{root}")
    norm = os.path.normpath(text)
    if norm == ".." or norm.startswith(".." + os.sep) or norm.startswith("../"):
        raise SchemaError(f"{where}: path {text!r} leaves {root} (..); expected a path inside it")
    root_real = os.path.realpath(root)
    full = os.path.join(root, text)
    real = os.path.realpath(full)
    if real != root_real and not real.startswith(root_real.rstrip(os.sep) + os.sep):
        raise SchemaError(f"{where}: path {text!r} resolves to {real}, outside {root_real} "
                          "(a symlink?); expected a file inside the root")
    return Path(full)


def check_inside(root: str | os.PathLike, paths: Sequence[str], *, dataset: str) -> None:
    """Check that every absolute ``paths`` entry a loader built from ``root`` resolves inside
    it (a ``..`` in a table's path column, or a symlink pointing out, is refused naming the
    first such path). Fast: lexical check on every path, symlinks resolved per folder."""
    root_real = os.path.realpath(root)
    prefix = root_real.rstrip(os.sep) + os.sep
    root_abs = os.path.abspath(root).rstrip(os.sep) + os.sep
    folders: dict[str, str] = {}
    for p in paths:
        norm = os.path.normpath(os.path.abspath(p))
        if not (norm + os.sep).startswith(root_abs) and not (norm + os.sep).startswith(prefix):
            raise SchemaError(f"{dataset}: image path {p} leaves the root {root}; expected "
                              "paths inside it")
        folder, name = os.path.split(norm)
        real_folder = folders.get(folder)
        if real_folder is None:
            real_folder = folders[folder] = os.path.realpath(folder)
        real = os.path.join(real_folder, name)
        if os.path.islink(real):
            real = os.path.realpath(real)
        if not (real + os.sep).startswith(prefix):
            raise SchemaError(f"{dataset}: image path {p} resolves to {real}, outside the root "
                              f"{root_real} (a symlink?); expected files inside the root")


def duplicate_names(names: Sequence[str]) -> list[str]:
    """The names that occur more than once, in first-occurrence order."""
    counts = Counter(names)
    return [n for n in dict.fromkeys(names) if counts[n] > 1]


def csv_header(path: str | os.PathLike) -> list[str]:
    """The first line of a CSV file as column names (stripped); ``[]`` for an empty file."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        row = next(csv.reader(f), None)
    return [c.strip() for c in row] if row else []


def check_header(path: str | os.PathLike, names: Sequence[str], *, n_rows: int,
                 what: str = "table") -> None:
    """Refuse a table whose header repeats a column name or that has no data rows."""
    dup = duplicate_names(list(names))
    if dup:
        raise SchemaError(f"{path}: column {dup[0]!r} occurs more than once in the header; "
                          "expected unique column names")
    if n_rows == 0:
        raise SchemaError(f"{path}: the {what} has a header but no rows; expected at least one")


def to_8bit(im: Image.Image, *, where: str) -> Image.Image:
    """``im`` in mode ``L`` or ``RGB``: 16-bit grayscale scaled by 255/65535 (rounded), 32-bit
    integer images whose values fit 16 bits likewise (values up to 255 kept), alpha dropped,
    ``1``/``P``/``CMYK``/``YCbCr``/... converted by PIL; float images are refused."""
    mode = im.mode
    if mode in _EIGHT_BIT:
        return im
    if mode in _SIXTEEN_BIT or mode == "I":
        arr = np.asarray(im).astype(np.int64)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise SchemaError(f"{where}: {mode} image with values {lo}..{hi}; expected 8- or "
                              "16-bit unsigned values")
        if mode == "I" and hi <= 255:
            return Image.fromarray(arr.astype(np.uint8), "L")
        return Image.fromarray(np.rint(arr * (255 / 65535)).astype(np.uint8), "L")
    if mode in ("F", "I;32F") or mode.startswith("F"):
        raise SchemaError(f"{where}: floating-point image (mode {mode}) has no defined range; "
                          "expected an 8- or 16-bit image")
    if mode in ("LA", "La", "1"):
        return im.convert("L")
    return im.convert("RGB")


def open_image(path: str | os.PathLike, *, where: str) -> tuple[Image.Image, str]:
    """Open and decode ``path`` after the size checks; returns it as :func:`to_8bit` does,
    with the file's own PIL mode (the image was converted when the two modes differ).

    Refused in one line naming ``where`` and the file: an unreadable file, more than
    :data:`MAX_IMAGE_PIXELS` pixels (checked from the header, before decoding), a side below
    :data:`MIN_IMAGE_SIDE`, a float image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise SchemaError(
                        f"{where}: image {path} is {w}x{h} pixels, over the limit of "
                        f"{MAX_IMAGE_PIXELS:,} (8192x8192); expected a smaller image")
                if min(w, h) < MIN_IMAGE_SIDE:
                    raise SchemaError(
                        f"{where}: image {path} is {w}x{h} pixels; expected sides of at least "
                        f"{MIN_IMAGE_SIDE} pixels (SSIM's window)")
                im.load()
                return to_8bit(im, where=f"{where}: image {path}").copy(), im.mode
    except SchemaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise SchemaError(f"{where}: image {path} is too large ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SchemaError(f"{where}: cannot read image {path} ({err})") from None


def png_bytes(im: Image.Image) -> bytes:
    """``im`` encoded as PNG (to embed a converted image in a Dataset)."""
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
