"""Embedded procedural datasets ("phantoms"): no download, no root, deterministic per seed.

Importing this package registers every phantom in :data:`benchmark.data.registry.DATASETS`.
"""

from . import (
    brain,  # noqa: F401  (registers "phantom-brain")
    cardiac,  # noqa: F401  (registers "phantom-cardiac")
    cxr,  # noqa: F401  (registers "phantom-cxr")
    skin,  # noqa: F401  (registers "phantom-skin")
)

#: Dataset name -> phantom module. Every module offers the same surface: ``sample_params``,
#: ``render``, ``generate`` / ``generate_params``, ``reference`` / ``reference_params``,
#: ``majority_phenotype`` and a ``phenotype`` field on its parameters.
PHANTOMS = {"phantom-brain": brain, "phantom-cardiac": cardiac, "phantom-cxr": cxr,
            "phantom-skin": skin}

__all__ = ["PHANTOMS", "brain", "cardiac", "cxr", "skin"]
