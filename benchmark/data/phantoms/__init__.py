"""Embedded procedural datasets ("phantoms"): no download, no root, deterministic per seed.

Importing this package registers every phantom in :data:`benchmark.data.registry.DATASETS`.
"""

from . import cxr  # noqa: F401  (registers "phantom-cxr")

__all__ = ["cxr"]
