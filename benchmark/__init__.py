"""fairsynth-bench: a benchmark for fairness-aware medical image synthesis.

The public surface that methods and baselines depend on. Generators import from here only.
"""

from .generators import (
    GENERATORS,
    NO_CONDITIONING,
    Conditioning,
    FitContext,
    Generator,
    OptionError,
    Plan,
    PlanRow,
    allocate,
    attach_sources,
    cell_counts,
    register_generator,
)
from .grouping import INTERSECTION_SEP, STRATUM_SEP, UNKNOWN, Grouper, GroupLabels
from .profiles import PROFILES, Profile
from .registry import UnknownNameError
from .schema import (
    ATTRIBUTES,
    COLUMNS,
    FEATURES,
    FINDINGS,
    SchemaError,
    age_to_group,
    empty_dataset,
    fill_optional,
    validate_dataset,
)
from .tasks import TASKS, Task, register_task

__version__ = "0.1.0"

__all__ = [
    "ATTRIBUTES",
    "COLUMNS",
    "FEATURES",
    "FINDINGS",
    "GENERATORS",
    "INTERSECTION_SEP",
    "NO_CONDITIONING",
    "PROFILES",
    "TASKS",
    "UNKNOWN",
    "Conditioning",
    "FitContext",
    "Generator",
    "GroupLabels",
    "Grouper",
    "OptionError",
    "Plan",
    "PlanRow",
    "Profile",
    "STRATUM_SEP",
    "SchemaError",
    "Task",
    "UnknownNameError",
    "age_to_group",
    "allocate",
    "attach_sources",
    "cell_counts",
    "empty_dataset",
    "fill_optional",
    "register_generator",
    "register_task",
    "validate_dataset",
]
