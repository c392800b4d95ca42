"""Generation metrics: feature extractors with an on-disk feature cache, feature spaces, the
Fréchet distance (FID), KID, precision/recall/density/coverage, the per-group table with its
summaries and bootstrap intervals, and image similarity / diversity functions."""

from .features import (
    FEATURES_CODE_VERSION,
    CallableFeatureExtractor,
    FeatureCache,
    FeatureExtractor,
    InceptionV3FID,
    ThumbnailFeatures,
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
    KEY_SUBSETS,
    GroupFID,
    feature_stats,
    fid,
    fid_by_group,
    fid_variance,
    frechet_distance,
    frechet_from_gram,
    repeated_subset_fid,
    weighted_stats,
)
from .kid import KIDResult, kid, mmd2_unbiased, polynomial_kernel
from .prdc import PRDC, prdc
from .spaces import (
    FEATURE_SPACES,
    INCEPTION_SPACE,
    FeatureSpace,
    feature_extractors,
    register_feature_space,
)
from .table import BY_GROUP, TableSettings, generation_table, summary_keys

#: Result keys of the Inception space (other spaces: ``FeatureSpace.key``).
KEY_KID = "kid"
KEY_PRECISION = "precision"
KEY_RECALL = "recall"
KEY_DENSITY = "density"
KEY_COVERAGE = "coverage"
KEY_ES_FID = "es_fid"
KEY_FID_GAP = "fid_gap"

__all__ = [
    "BY_GROUP",
    "FEATURES_CODE_VERSION",
    "FEATURE_SPACES",
    "INCEPTION_SPACE",
    "KEY_COVERAGE",
    "KEY_DENSITY",
    "KEY_ES_FID",
    "KEY_FID_GAP",
    "KEY_KID",
    "KEY_PRECISION",
    "KEY_RECALL",
    "PRDC",
    "CallableFeatureExtractor",
    "FeatureSpace",
    "KIDResult",
    "TableSettings",
    "ThumbnailFeatures",
    "feature_extractors",
    "frechet_from_gram",
    "generation_table",
    "kid",
    "mmd2_unbiased",
    "polynomial_kernel",
    "prdc",
    "register_feature_space",
    "summary_keys",
    "weighted_stats",
    "KEY_FID",
    "KEY_FID_BY_GROUP",
    "KEY_FID_VARIANCE",
    "KEY_SUBSETS",
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
    "repeated_subset_fid",
    "tf1_bilinear_resize",
    "to_uint8_array",
]
