"""Pictures and reports of runs and datasets."""

from .grid import cell_examples, sample_grid
from .summary import downstream_summary, summary

__all__ = ["cell_examples", "downstream_summary", "sample_grid", "summary"]
