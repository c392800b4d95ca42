"""Cheap stand-ins shared by the tests (no weights, no downloads)."""

from __future__ import annotations

import numpy as np

from benchmark.metrics import FeatureExtractor


class MeanStdMax(FeatureExtractor):
    """A 3-d stand-in feature extractor: the mean, std and max of each image's pixels."""

    name = "mean-std-max-test"
    dim = 3

    def config(self):
        return {"kind": "mean-std-max"}

    def _compute(self, arrays):
        return np.array([[a.mean(), a.std(), a.max()] for a in arrays], dtype=np.float32)
