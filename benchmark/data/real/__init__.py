"""Loaders of real datasets, one module per dataset, each registered by name.

Every loader takes the local root folder of a copy laid out as its publisher ships it and
returns the standard :class:`datasets.Dataset` (:mod:`benchmark.schema`). Images are file
paths decoded on access; ``check="exists"`` (default) stats every file at load time and
``check="decode"`` (or ``python -m benchmark datasets --summary NAME --root DIR --verify``)
decodes every one, naming any unreadable file. Each dataset's card is in ``data_cards/``.
"""

from . import (  # noqa: F401  (registers the loaders)
    cardiac,
    chexpert,
    combined,
    covid19,
    fairgenmed,
    fitzpatrick17k,
    isic,
    ixi,
    mimic_cxr,
    oasis,
)
from ._common import (
    IMAGE_CHECKS,
    DataLayoutError,
    SplitFile,
    load_split_file,
    verify_images,
    write_split_file,
)

__all__ = [
    "IMAGE_CHECKS",
    "DataLayoutError",
    "SplitFile",
    "load_split_file",
    "verify_images",
    "write_split_file",
]
