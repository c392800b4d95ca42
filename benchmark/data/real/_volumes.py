"""2-D slices of 3-D/4-D MRI volumes (Analyze 7.5, NIfTI-1 pairs and .nii[.gz]) via nibabel.

A slice is chosen by its anatomical axis (from the image's affine: axial = the array axis that
runs inferior-superior) and a position along it, read lazily (only that slice is read from
disk), rotated so that anterior is at the top and the patient's left on the image's right
(radiological), and scaled to uint8 by percentiles of its non-zero voxels.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from ._common import DataLayoutError

#: anatomical plane -> the axis codes (nibabel.aff2axcodes) of the axis a slice is cut across
PLANES = {"axial": ("S", "I"), "coronal": ("A", "P"), "sagittal": ("L", "R")}


def load_volume(path: str | os.PathLike, *, root: str | os.PathLike | None = None):
    """nibabel image of ``path``; an unreadable file raises naming it. With ``root``, a path
    that leaves it (``..``, a symlink pointing out) is refused before anything is opened."""
    import nibabel as nib

    if root is not None:
        from ..validate import check_inside

        check_inside(root, [os.fspath(path)], dataset="volume")
    try:
        return nib.load(os.fspath(path))
    except Exception as err:  # nibabel raises many types (ImageFileError, OSError, ValueError)
        raise DataLayoutError(f"cannot read volume {path} ({type(err).__name__}: {err})") from None


def _affine(img) -> np.ndarray:
    return img.affine if img.affine is not None else img.header.get_best_affine()


def slice_axis(img, plane: str = "axial") -> int:
    """The array axis of ``img`` that a slice of ``plane`` is cut across (from its affine)."""
    import nibabel as nib

    codes = nib.aff2axcodes(_affine(img))
    for axis, code in enumerate(codes[:3]):
        if code in PLANES[plane]:
            return axis
    raise DataLayoutError(f"no {plane} axis in orientation {codes}")


def volume_slice(path: str | os.PathLike, *, plane: str = "axial", position: float = 0.5,
                 index: int | None = None, axis: int | None = None, frame: int = 0,
                 low: float = 0.5, high: float = 99.5,
                 root: str | os.PathLike | None = None) -> np.ndarray:
    """One 2-D uint8 slice of the volume at ``path``.

    Args:
        plane: ``axial`` (default), ``coronal`` or ``sagittal``; the axis comes from the affine
            unless ``axis`` overrides it.
        position: where along that axis, as a fraction of its length (0.5 = middle), unless
            ``index`` gives the slice number.
        frame: the time frame of a 4-D volume.
        low, high: percentiles of the non-zero voxels mapped to 0 and 255.
        root: the dataset root the file must lie in (see :func:`load_volume`).
    """
    if plane not in PLANES:
        raise ValueError(f"plane={plane!r}; expected one of {', '.join(PLANES)}")
    img = load_volume(path, root=root)
    shape = img.shape
    if len(shape) < 3:
        raise DataLayoutError(f"volume {path} has shape {shape}; expected 3-D or 4-D")
    ax = slice_axis(img, plane) if axis is None else axis
    k = index if index is not None else int(round(position * (shape[ax] - 1)))
    if not 0 <= k < shape[ax]:
        raise ValueError(f"slice {k} is outside axis {ax} of {path} (size {shape[ax]})")
    sl: list[object] = [slice(None)] * len(shape)
    sl[ax] = k
    for extra in range(3, len(shape)):
        sl[extra] = frame if extra == 3 else 0
    try:
        data = np.asarray(img.dataobj[tuple(sl)], dtype=np.float32)
    except Exception as err:
        raise DataLayoutError(f"cannot read volume {path} ({type(err).__name__}: {err})") from None
    data = np.squeeze(data)
    if data.ndim != 2:
        raise DataLayoutError(f"volume {path}: slice has shape {data.shape}, expected 2-D")
    # orient: the two remaining axes in RAS order, anterior/superior up, patient left on the
    # right (radiological view)
    import nibabel as nib

    codes = [c for i, c in enumerate(nib.aff2axcodes(_affine(img))[:3]) if i != ax]
    vertical = ("S", "I") if any(c in ("S", "I") for c in codes) else ("A", "P")
    if codes[1] in vertical:
        data = data.T  # rows: the vertical axis (S-I, or A-P for an axial slice)
        codes = codes[::-1]
    if codes[0] in ("A", "S"):
        data = data[::-1]  # anterior / superior at the top
    if codes[1] == "R":
        data = data[:, ::-1]  # patient's left on the image's right (radiological)
    return to_uint8(data, low=low, high=high)


def to_uint8(data: np.ndarray, *, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale to 0-255 by the ``low``/``high`` percentiles of the non-zero values."""
    data = np.nan_to_num(np.asarray(data, dtype=np.float32))
    nz = data[data != 0]
    if nz.size == 0:
        return np.zeros(data.shape, dtype=np.uint8)
    lo, hi = np.percentile(nz, [low, high])
    if hi <= lo:  # a constant image: non-zero voxels white
        return np.ascontiguousarray(np.where(data != 0, 255, 0).astype(np.uint8))
    return np.ascontiguousarray(np.clip((data - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8))


def png_cell(array: np.ndarray) -> dict[str, object]:
    """A datasets.Image cell holding PNG bytes of a uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return {"bytes": buf.getvalue(), "path": None}
