"""The seed papers' generators (FairGen, sketch + ControlNet, CompDiff, cardiac ControlNet).

Each lives in its own sub-package, registers through the ``fairsynth_bench.generators``
entry-point group in pyproject.toml, and depends on ``benchmark`` only through its public
surface. None is implemented yet.
"""
