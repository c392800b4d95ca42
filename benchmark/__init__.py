"""fairsynth-bench: a benchmark for fairness-aware medical image synthesis.

The public surface that methods and baselines depend on. Generators import from here only.
"""

from .generators import (
    GENERATORS,
    FitContext,
    Generator,
    OptionError,
    Plan,
    PlanRow,
    allocate,
    cell_counts,
    register_generator,
)
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
    "PROFILES",
    "TASKS",
    "FitContext",
    "Generator",
    "OptionError",
    "Plan",
    "PlanRow",
    "Profile",
    "SchemaError",
    "Task",
    "UnknownNameError",
    "age_to_group",
    "allocate",
    "cell_counts",
    "empty_dataset",
    "register_generator",
    "register_task",
    "validate_dataset",
]
