"""Pictures and reports of runs and datasets."""

from .grid import cell_examples, sample_grid
from .html import report_run, write_report
from .summary import downstream_summary, summary

__all__ = ["cell_examples", "downstream_summary", "report_run", "sample_grid", "summary",
           "write_report"]
