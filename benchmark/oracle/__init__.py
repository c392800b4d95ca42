"""Phantom oracles: ground truth for generated images.

Every phantom image comes with its exact generating parameters (the phantom modules'
``generate_params`` / ``reference_params``). An :class:`Oracle` is a classifier trained on a
large phantom population that reads the finding, its subgroup-specific phenotype and the
attributes back from an image, so a benchmark can check whether a generated image carries the
condition it was asked for (:mod:`benchmark.oracle.adherence`) and compare feature statistics
in a domain-specific feature space (``fd_oracle``, :class:`OracleFeatures`).
"""

from .adherence import (
    KEY_ADHERENCE,
    adherence_from_labels,
    condition_adherence,
    dataset_adherence,
)
from .features import KEY_FD_ORACLE, OracleFeatures, fd_oracle, oracle_metrics
from .model import (
    SMOKE_CONFIG,
    Oracle,
    OracleConfig,
    config_for_profile,
    get_oracle,
    heldout_population,
    oracle_accuracy,
    oracle_cache_dir,
    train_oracle,
)
from .phantoms import (
    PHANTOM_SPECS,
    NotAPhantomError,
    PhantomSpec,
    draw_cell_params,
    draw_population,
    phantom_spec,
    stream_seed,
)

__all__ = [
    "KEY_ADHERENCE",
    "KEY_FD_ORACLE",
    "OracleFeatures",
    "adherence_from_labels",
    "config_for_profile",
    "condition_adherence",
    "dataset_adherence",
    "fd_oracle",
    "oracle_metrics",
    "PHANTOM_SPECS",
    "SMOKE_CONFIG",
    "NotAPhantomError",
    "Oracle",
    "OracleConfig",
    "PhantomSpec",
    "draw_cell_params",
    "draw_population",
    "get_oracle",
    "heldout_population",
    "oracle_accuracy",
    "oracle_cache_dir",
    "phantom_spec",
    "stream_seed",
    "train_oracle",
]
