"""Embedded procedural datasets ("phantoms"): no download, no root, deterministic per seed.

Importing this package registers every phantom in :data:`benchmark.data.registry.DATASETS`.
"""

from . import (
    brain,  # noqa: F401  (registers "phantom-brain")
    cardiac,  # noqa: F401  (registers "phantom-cardiac")
    cxr,  # noqa: F401  (registers "phantom-cxr")
    skin,  # noqa: F401  (registers "phantom-skin")
)

__all__ = ["brain", "cardiac", "cxr", "skin"]
