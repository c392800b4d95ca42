"""The phantom base class: what a procedural dataset defines, and what it inherits.

A phantom defines its generative model: :meth:`Phantom.sample_params` (the parameters of
``n`` images from a random generator, optionally constrained), :meth:`Phantom.render` (one
image from its parameters), :meth:`Phantom.attributes` (the schema attribute values a row
records), optionally a mask renderer and :meth:`Phantom.majority_phenotype`, plus a few class
attributes (name, version, findings, the constraints its reference populations accept, the
calibration inputs of its cache key). Everything else is inherited and therefore the same for
every phantom: seeded parameter streams (:meth:`~Phantom.generate_params`,
:meth:`~Phantom.reference_params`), rendering into the standard schema, patient-level splits,
cache keys, the memory and disk cache, and the registered loader.

Each phantom module builds one instance, registers it with :func:`register_phantom` (which
also registers its :class:`~benchmark.data.registry.DatasetSpec`) and exposes the instance's
methods under the module-level names its data card documents (``cxr.generate``,
``cxr.reference``, ...).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import datasets
import numpy as np

from ...registry import Registry
from ..registry import DatasetSpec, register_dataset
from ..splits import assign_splits
from ._common import cached_dataset, check_choice, params_to_dataset, phantom_cache_key, seed_rng


class Phantom(ABC):
    """A procedural dataset: no download, no root, deterministic per seed.

    Class attributes a phantom sets:
        name: the dataset's registry name, also every row's ``source`` (``phantom-cxr``).
        key: the short name in cache keys and ids (``cxr``: patient ids ``cxr-p000001``,
            reference ids ``cxr-ref-p000001``).
        version: bumped whenever sampling or rendering changes (part of every cache key).
        description: one line for listings. card: the data card's file in ``data_cards/``.
        findings: every finding the phantom draws. channels: 1 (grayscale) or 3 (RGB).
        constraints: the constraints :meth:`reference` accepts, each with its allowed values
            (``{"sex": SEX, "age_group": AGE_GROUPS, "finding": CXR_FINDINGS}``).
        generate_stream, reference_stream: the names of the seeded random streams
            (:func:`~._common.seed_rng`) of :meth:`generate_params` and
            :meth:`reference_params`.
        render_mask: ``render_mask(params, image_size) -> uint8 labels`` filling the ``mask``
            column, or ``None`` (no mask).
    """

    name: ClassVar[str]
    key: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    card: ClassVar[str]
    findings: ClassVar[tuple[str, ...]]
    channels: ClassVar[int]
    constraints: ClassVar[Mapping[str, Sequence[object]]]
    generate_stream: ClassVar[str] = "generate"
    reference_stream: ClassVar[str] = "reference"
    render_mask: ClassVar[Callable[[Any, int], np.ndarray] | None] = None

    # -- the per-phantom parts -------------------------------------------------------------

    @abstractmethod
    def sample_params(self, rng: np.random.Generator, n: int, **kwargs: Any) -> list[Any]:
        """The parameters of ``n`` rows drawn from ``rng`` (the only source of randomness).

        Accepts every name of :attr:`constraints` as a keyword (``None``: unconstrained) and
        ``id_prefix``; each parameter object has ``sample_id``, ``patient_id``, ``finding``
        and ``phenotype``.
        """

    @abstractmethod
    def render(self, params: Any, image_size: int = 64) -> np.ndarray:
        """The uint8 image ``(H, W)`` or ``(H, W, 3)`` of one parameter object."""

    @abstractmethod
    def attributes(self, params: Any) -> Mapping[str, object]:
        """The base attribute values a row records (``sex``, ``age``, ``race``,
        ``skin_tone``, ``bmi``; absent keys are ``None``)."""

    def majority_phenotype(self, params: Any) -> Any:
        """The same image drawn with the majority subgroup's appearance of its finding.

        Raises:
            NotImplementedError: the phantom has no subgroup-specific phenotype to erase.
        """
        raise NotImplementedError(
            f"{self.name} has no majority_phenotype(params), so a minority phenotype cannot be "
            "erased on it")

    def calibration(self) -> dict[str, object]:
        """Calibration inputs (JSON-serialisable) that are part of every cache key."""
        return {}

    def reference_sampling(self, constraints: Mapping[str, object]) -> dict[str, object]:
        """The keyword arguments of :meth:`sample_params` for a reference population with
        ``constraints`` (every name of :attr:`constraints`, ``None`` where free)."""
        return dict(constraints)

    # -- inherited ---------------------------------------------------------------------------

    def check_constraints(self, constraints: Mapping[str, object]) -> dict[str, object]:
        """Every constraint of :attr:`constraints` (``None`` where not given), checked.

        Raises:
            ValueError: an unknown constraint name, or a value outside its vocabulary (the
                message names both and what was expected).
        """
        unknown = sorted(set(constraints) - set(self.constraints))
        if unknown:
            raise ValueError(f"{self.name} reference populations have no constraint "
                             f"{unknown[0]!r}; expected one of {', '.join(self.constraints)}")
        for name, choices in self.constraints.items():
            check_choice(name, constraints.get(name), choices)
        return {name: constraints.get(name) for name in self.constraints}

    def generate_params(self, n_images: int, *, seed: int = 0) -> list[Any]:
        """The parameters of :meth:`generate`'s rows, in row order (independent of image
        size): :meth:`sample_params` on the seed's :attr:`generate_stream`."""
        if n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {n_images}")
        return self.sample_params(seed_rng(seed, self.generate_stream), int(n_images))

    def reference_params(self, n: int, *, seed: int = 0, **constraints: object) -> list[Any]:
        """The parameters of :meth:`reference`'s rows, in row order: :meth:`sample_params`
        on the seed's :attr:`reference_stream`, ids prefixed ``<key>-ref``."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        full = self.check_constraints(constraints)
        return self.sample_params(seed_rng(seed, self.reference_stream), int(n),
                                  id_prefix=f"{self.key}-ref", **self.reference_sampling(full))

    def to_dataset(self, params: Sequence[Any], image_size: int,
                   splits: Sequence[str]) -> datasets.Dataset:
        """``params`` rendered into a standard-schema Dataset with the given splits."""
        return params_to_dataset(params, splits, image_size=image_size, render=self.render,
                                 attributes=self.attributes, source=self.name,
                                 render_mask=self.render_mask)

    def cache_key(self, kind: str, **config: object) -> str:
        """sha256 of everything a cached dataset of this phantom depends on: its key,
        :attr:`version`, :meth:`calibration`, the schema version, ``kind`` and ``config``."""
        return phantom_cache_key(self.key, self.version, kind, **self.calibration(), **config)

    def generate(self, n_images: int, *, image_size: int = 64, seed: int = 0,
                 split_salt: str = "fairsynth") -> datasets.Dataset:
        """The phantom dataset: ``n_images`` rows in the standard schema, split by patient.

        Deterministic per ``(n_images, seed)``; the rows' generating parameters are
        :meth:`generate_params` ``(n_images, seed=seed)`` in the same order. ``split`` comes
        from :func:`benchmark.data.splits.assign_splits` over the patient ids with
        ``split_salt`` (all rows of a patient share a split). Cached in memory and on disk
        under ``$FAIRSYNTH_CACHE/phantoms/<key>/``.
        """
        n_images, image_size, seed = int(n_images), int(image_size), int(seed)
        if n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {n_images}")
        key = self.cache_key("generate", n_images=n_images, image_size=image_size, seed=seed,
                             split_salt=split_salt)

        def build() -> datasets.Dataset:
            params = self.generate_params(n_images, seed=seed)
            splits = assign_splits([p.patient_id for p in params], salt=split_salt)
            return self.to_dataset(params, image_size, splits)

        return cached_dataset(key, build)

    def reference(self, n: int, *, image_size: int = 64, seed: int = 0,
                  **constraints: object) -> datasets.Dataset:
        """A reference population of ``n`` images of any cell of :attr:`constraints`.

        Constraints left ``None`` follow the phantom's distribution given the others. Rows
        have ``split == "test"`` (a reference population is for evaluation only); patient ids
        start with ``<key>-ref-`` and never collide with :meth:`generate`'s. Parameters:
        :meth:`reference_params`. Cached like :meth:`generate`.
        """
        full = self.check_constraints(constraints)
        n, image_size, seed = int(n), int(image_size), int(seed)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        key = self.cache_key("reference", n=n, image_size=image_size, seed=seed, **full)

        def build() -> datasets.Dataset:
            params = self.reference_params(n, seed=seed, **full)
            return self.to_dataset(params, image_size, ["test"] * len(params))

        return cached_dataset(key, build)

    def load(self, *, root: str | os.PathLike | None = None, image_size: int = 64,
             n_images: int = 2000, seed: int = 0,
             split_salt: str = "fairsynth") -> datasets.Dataset:
        """The registered loader: :meth:`generate` (``root`` is ignored)."""
        del root
        return self.generate(n_images, image_size=image_size, seed=seed, split_salt=split_salt)

    def dataset_spec(self) -> DatasetSpec:
        """The phantom's entry in :data:`benchmark.data.DATASETS` (loader: :meth:`load`)."""
        return DatasetSpec(name=self.name, description=self.description, loader=self.load,
                           phantom=True, card=self.card)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version}>"


def _check_phantom(name: str, phantom: object) -> None:
    if not isinstance(phantom, Phantom):
        raise TypeError(f"phantom {name!r} must be a Phantom instance, got {type(phantom)}")
    if phantom.name != name:
        raise ValueError(f"phantom registered as {name!r} is named {phantom.name!r}")
    missing = [a for a in ("key", "version", "description", "card", "findings", "channels",
                           "constraints") if not hasattr(phantom, a)]
    if missing:
        raise TypeError(f"phantom {name!r} does not set {', '.join(missing)}")


#: Dataset name -> :class:`Phantom`, every embedded phantom (filled by :func:`register_phantom`).
PHANTOMS: Registry[Phantom] = Registry("phantom", check=_check_phantom)


def register_phantom(phantom: Phantom) -> Phantom:
    """Register ``phantom`` in :data:`PHANTOMS` and its loader in
    :data:`benchmark.data.DATASETS`; returns it."""
    PHANTOMS.register(phantom.name, phantom)
    register_dataset(phantom.dataset_spec())
    return phantom
