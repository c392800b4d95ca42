"""Reference generators. Each sub-package registers through the ``fairsynth_bench.generators``
entry-point group in pyproject.toml and depends on ``benchmark`` only through its public
surface."""
