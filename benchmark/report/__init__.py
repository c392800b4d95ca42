"""Pictures and reports of runs and datasets."""

from .grid import cell_examples, sample_grid

__all__ = ["cell_examples", "sample_grid"]
