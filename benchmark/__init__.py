"""fairsynth-bench: a benchmark for fairness-aware medical image synthesis.

The public surface that methods and baselines depend on. Generators import from here only.
"""

from .generators import (
    ALLOCATIONS,
    GENERATORS,
    NO_CONDITIONING,
    Budget,
    Conditioning,
    FitContext,
    Generator,
    GroupScore,
    OptionError,
    Plan,
    PlanRow,
    allocate,
    allocate_majority_score,
    attach_sources,
    cell_counts,
    majority_scores,
    register_generator,
    resolve_budget,
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
    "ALLOCATIONS",
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
    "Budget",
    "Conditioning",
    "FitContext",
    "Generator",
    "GroupLabels",
    "GroupScore",
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
    "allocate_majority_score",
    "attach_sources",
    "cell_counts",
    "empty_dataset",
    "fill_optional",
    "majority_scores",
    "register_generator",
    "register_task",
    "resolve_budget",
    "validate_dataset",
]
