"""Dataset loaders (real and phantom), all returning the standard schema."""

from . import (
    phantoms,  # noqa: F401  (registers the embedded phantom datasets)
    real,  # noqa: F401  (registers the real-dataset loaders)
)
from .io import read_image_folder, write_image_folder
from .registry import DATASETS, DatasetSpec, register_dataset
from .splits import DEFAULT_FRACTIONS, assign_splits, split_of

__all__ = [
    "DATASETS",
    "DEFAULT_FRACTIONS",
    "DatasetSpec",
    "assign_splits",
    "read_image_folder",
    "register_dataset",
    "split_of",
    "write_image_folder",
]
