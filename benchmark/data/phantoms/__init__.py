"""Embedded procedural datasets ("phantoms"): no download, no root, deterministic per seed.

Every phantom is a :class:`Phantom` (``benchmark/data/phantoms/base.py``): it defines
``sample_params``, ``render``, ``attributes`` and ``majority_phenotype`` and inherits
``generate`` / ``reference`` / ``load`` / ``cache_key``. Importing this package registers every
phantom in :data:`PHANTOMS` and its loader in :data:`benchmark.data.registry.DATASETS`; each
module also exposes its phantom's methods under module-level names (``cxr.generate``, ...).
"""

from . import (
    brain,  # noqa: F401  (registers "phantom-brain")
    cardiac,  # noqa: F401  (registers "phantom-cardiac")
    cxr,  # noqa: F401  (registers "phantom-cxr")
    skin,  # noqa: F401  (registers "phantom-skin")
)
from .base import PHANTOMS, Phantom, register_phantom

__all__ = ["PHANTOMS", "Phantom", "brain", "cardiac", "cxr", "register_phantom", "skin"]
