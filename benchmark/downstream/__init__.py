"""Downstream evaluation: classifiers trained on real, real + synthetic and synthetic-only
images (timm backbones, k-NN and gradient boosting on frozen features), scored on the real
test split for accuracy, AUC, CAS and the fairness metrics of
:mod:`benchmark.metrics.fairness`.

Heavy imports (torch, timm, sklearn) happen in the submodules, on use.
"""

from .config import (
    BACKBONES,
    FEATURE_HEADS,
    TRAIN_SETS,
    BackboneSpec,
    DownstreamConfig,
    register_backbone,
)

__all__ = [
    "BACKBONES",
    "FEATURE_HEADS",
    "TRAIN_SETS",
    "BackboneSpec",
    "DownstreamConfig",
    "downstream_metrics",
    "register_backbone",
    "train_classifier",
]


def __getattr__(name: str):  # lazy: keep `import benchmark.profiles` light
    if name == "downstream_metrics":
        from .evaluate import downstream_metrics

        return downstream_metrics
    if name == "train_classifier":
        from .classifier import train_classifier

        return train_classifier
    raise AttributeError(name)
