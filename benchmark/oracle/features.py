"""The oracle's penultimate layer as a feature extractor, and the domain Fréchet distance.

``fd_oracle`` is the Fréchet distance (the FID formula) between real and synthetic images in
the feature space of a phantom oracle instead of InceptionV3. It is *not* an FID: its numbers
are comparable only between runs that use the same oracle (its cache key is recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np

from ..metrics import FeatureExtractor, fid
from ..metrics.features import ImageLike
from ..metrics.spaces import FeatureSpace
from ..tasks import Task
from .model import Oracle, config_for_profile, get_oracle
from .phantoms import PHANTOM_SPECS

#: Result key of the Fréchet distance in an oracle's feature space (never "fid").
KEY_FD_ORACLE = "fd_oracle"


class OracleFeatures(FeatureExtractor):
    """:meth:`Oracle.features` behind the harness's :class:`FeatureExtractor` interface, so
    the feature cache and :func:`benchmark.metrics.fid_by_group` work with it unchanged."""

    def __init__(self, oracle: Oracle, *, batch_size: int = 256):
        self.oracle = oracle
        self.name = f"oracle-{oracle.spec.dataset}"
        self.dim = oracle.feature_dim
        self._batch_size = batch_size

    def config(self) -> dict[str, Any]:
        return {"oracle_key": self.oracle.key, "dataset": self.oracle.spec.dataset,
                "config": self.oracle.config.as_dict()}

    def _compute(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return self.oracle.features(arrays, batch_size=self._batch_size).astype(np.float32)


def _oracle_space_factory(task: Task, device: str, profile: str) -> OracleFeatures | None:
    """The oracle extractor of a phantom task (trained once per phantom and profile setting,
    then cached; :func:`config_for_profile`); ``None`` for a task on real data."""
    del device  # the oracle is small: it runs on the CPU
    if task.dataset not in PHANTOM_SPECS:
        return None
    return OracleFeatures(get_oracle(task.dataset, config_for_profile(profile, task.image_size)))


#: The ``oracle`` feature space of the harness (registered through the entry-point group
#: ``fairsynth_bench.feature_spaces``): ``fd_oracle``, ``kd_oracle``, ``precision_oracle``, ...
ORACLE_SPACE = FeatureSpace(
    name="oracle",
    description="penultimate layer of the phantom's oracle classifier (phantom tasks only)",
    factory=_oracle_space_factory,
)


def fd_oracle(oracle: Oracle, real: Sequence[ImageLike], synthetic: Sequence[ImageLike]) -> float:
    """Fréchet distance between the oracle features of ``real`` and ``synthetic`` images.

    .. math:: d^2 = \\lVert \\mu_r - \\mu_s \\rVert^2
              + \\operatorname{Tr}(\\Sigma_r + \\Sigma_s - 2 (\\Sigma_r \\Sigma_s)^{1/2})

    with means and covariances of :meth:`Oracle.features` (computed by
    :func:`benchmark.metrics.fid`, Heusel et al. 2017, in another feature space). Lower is
    closer; needs at least two images a side.
    """
    return fid(oracle.features(list(real)), oracle.features(list(synthetic)))


def oracle_metrics(real: datasets.Dataset, synthetic: datasets.Dataset, task: Task,
                   oracle: Oracle, *, bootstrap_resamples: int = 0, seed: int = 0
                   ) -> dict[str, Any]:
    """The oracle space's block of a run's generation metrics, from the harness's own table.

    :func:`benchmark.metrics.table.generation_table` in :data:`ORACLE_SPACE` with the run's
    groupings (:func:`benchmark.evaluation.groupings`), i.e. the same code and keys that
    ``benchmark run`` records (``fd_oracle``, ``fd_oracle_by_group``, ``fd_oracle_variance``,
    ``es_fd_oracle``, ``kd_oracle``, ``precision_oracle``, ...), plus
    ``condition_adherence`` (:func:`benchmark.oracle.adherence.dataset_adherence`) and
    ``oracle`` (which oracle, its cache key: these numbers compare only between runs with the
    same oracle). Intervals only with ``bootstrap_resamples`` > 0.
    """
    from ..evaluation import groupings
    from ..metrics.table import TableSettings, generation_table
    from .adherence import KEY_ADHERENCE, dataset_adherence

    mode = "L" if task.channels == 1 else "RGB"
    f_real = oracle.features([np.asarray(im.convert(mode)) for im in real["image"]])
    f_syn = oracle.features([np.asarray(im.convert(mode)) for im in synthetic["image"]])
    groups, strata = groupings(task, real, synthetic)
    out: dict[str, Any] = {
        "oracle": {"dataset": oracle.spec.dataset, "key": oracle.key,
                   "config": oracle.config.as_dict()},
        **generation_table(f_real, f_syn, ORACLE_SPACE, groupings=groups, strata=strata,
                           settings=TableSettings(bootstrap_resamples=bootstrap_resamples,
                                                  seed=seed)),
        KEY_ADHERENCE: dataset_adherence(oracle, synthetic, task) if len(synthetic) else None,
    }
    return out
