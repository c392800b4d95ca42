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
                   oracle: Oracle) -> dict[str, Any]:
    """The oracle's generation metrics of a run (for the harness's result record).

    ``fd_oracle``: overall, per group of each sensitive attribute
    (:func:`benchmark.metrics.fid_by_group` on oracle features) and the variance of the group
    values (:func:`benchmark.metrics.fid_variance`); ``condition_adherence``:
    :func:`benchmark.oracle.adherence.dataset_adherence`. ``oracle`` records which oracle
    (its cache key), since these numbers compare only between runs with the same oracle.
    """
    from ..metrics import fid_by_group, fid_variance
    from .adherence import KEY_ADHERENCE, dataset_adherence

    mode = "L" if task.channels == 1 else "RGB"
    f_real = oracle.features([np.asarray(im.convert(mode)) for im in real["image"]])
    f_syn = oracle.features([np.asarray(im.convert(mode)) for im in synthetic["image"]])
    out: dict[str, Any] = {
        "oracle": {"dataset": oracle.spec.dataset, "key": oracle.key,
                   "config": oracle.config.as_dict()},
        KEY_FD_ORACLE: {"value": None, "n_real": len(f_real), "n_synthetic": len(f_syn),
                        "by_group": {}, "variance": {}},
        KEY_ADHERENCE: None,
    }
    if len(f_real) >= 2 and len(f_syn) >= 2:
        out[KEY_FD_ORACLE]["value"] = fid(f_real, f_syn)
    for attr in task.sensitive_attributes:
        groups = fid_by_group(f_real, list(real[attr]), f_syn, list(synthetic[attr]))
        out[KEY_FD_ORACLE]["by_group"][attr] = {str(g): r.as_dict() for g, r in groups.items()}
        out[KEY_FD_ORACLE]["variance"][attr] = fid_variance(groups)
    if len(synthetic):
        out[KEY_ADHERENCE] = dataset_adherence(oracle, synthetic, task)
    return out
