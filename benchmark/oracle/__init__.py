"""Phantom oracles: ground truth for generated images.

Every phantom image comes with its exact generating parameters (the phantom modules'
``generate_params`` / ``reference_params``). An :class:`Oracle` is a classifier trained on a
large phantom population that reads the finding, its subgroup-specific phenotype and the
attributes back from an image, so a benchmark can check whether a generated image carries the
condition it was asked for (:mod:`benchmark.oracle.adherence`) and compare feature statistics
in a domain-specific feature space (``fd_oracle``, :class:`OracleFeatures`).
"""

from .model import (
    SMOKE_CONFIG,
    Oracle,
    OracleConfig,
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
