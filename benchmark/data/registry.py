"""The dataset registry: every loader, real or phantom, registers a :class:`DatasetSpec`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import datasets

from ..registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
        name: registry name (e.g. ``phantom-cxr``).
        description: one line for listings.
        loader: ``loader(*, root, image_size, n_images, seed, split_salt) -> datasets.Dataset``
            returning rows in the standard schema (:mod:`benchmark.schema`) with ``split``
            filled (a phantom splits by hashing patient ids with ``split_salt``; a real
            dataset uses its official split, its shipped split file, or a patient hash with
            its own fixed salt, as its data card says).
            Phantoms ignore ``root``; real datasets (``benchmark/data/real/``) ignore
            ``n_images``, ``seed`` and ``split_salt``, and keep images at their native size
            (``image_size`` is not applied: consumers resize).
        phantom: True for the embedded procedural datasets (no download, no root needed).
        card: the data card's file name in ``data_cards/``.
    """

    name: str
    description: str
    loader: Callable[..., datasets.Dataset]
    phantom: bool
    card: str


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name, spec)
