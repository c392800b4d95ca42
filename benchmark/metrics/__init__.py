"""Generation metrics: feature extractors with an on-disk feature cache, and FID overall, per
subgroup and its variance across subgroups."""

from .features import (
    FEATURES_CODE_VERSION,
    FeatureCache,
    FeatureExtractor,
    InceptionV3FID,
    WeightsNotFoundError,
    content_hash,
    default_cache,
    default_cache_dir,
    inception_fid_input,
    tf1_bilinear_resize,
    to_uint8_array,
)
from .frechet import (
    KEY_FID,
    KEY_FID_BY_GROUP,
    KEY_FID_VARIANCE,
    GroupFID,
    feature_stats,
    fid,
    fid_by_group,
    fid_variance,
    frechet_distance,
)

__all__ = [
    "FEATURES_CODE_VERSION",
    "KEY_FID",
    "KEY_FID_BY_GROUP",
    "KEY_FID_VARIANCE",
    "FeatureCache",
    "FeatureExtractor",
    "GroupFID",
    "InceptionV3FID",
    "WeightsNotFoundError",
    "content_hash",
    "default_cache",
    "default_cache_dir",
    "feature_stats",
    "fid",
    "fid_by_group",
    "fid_variance",
    "frechet_distance",
    "inception_fid_input",
    "tf1_bilinear_resize",
    "to_uint8_array",
]
