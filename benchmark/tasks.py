"""Tasks are data: a dataset, a class mapping, sensitive attributes, image size and budget.

A task owns its evaluation protocol: which attributes define subgroups (its grouper) and how
a sample's finding maps to the task's class. A new task is a few lines of
:func:`register_task`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import datasets

from .registry import Registry
from .schema import ATTRIBUTES, FINDINGS


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    Attributes:
        name: registry name.
        description: one line for listings.
        dataset: name in the dataset registry.
        classes: the task's classes, in order (label index = position); each is a finding
            name of the schema, so generated rows carry their class as their ``finding``.
        finding_to_class: maps a sample's ``finding`` to a class (default: each class to
            itself); findings not in the map are outside the task and are filtered out (the
            count is logged).
        sensitive_attributes: schema attributes whose values define subgroups.
        image_size: side of the square images the task works at, in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        prompt_template: text prompt of a (subgroup, class) cell, ``str.format`` fields are the
            sensitive attributes and ``finding`` (the class name with spaces).
        split_salt: salt of the patient-level split hash.
    """

    name: str
    description: str
    dataset: str
    classes: tuple[str, ...]
    sensitive_attributes: tuple[str, ...]
    image_size: int = 64
    channels: int = 1
    finding_to_class: Mapping[str, str] = field(default_factory=dict)
    prompt_template: str = "{finding}"
    split_salt: str = "fairsynth"

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError(f"task {self.name!r}: classes is empty")
        for cls in self.classes:
            if cls not in FINDINGS:  # generated rows carry their class as their finding
                raise ValueError(f"task {self.name!r}: class {cls!r} is not a schema finding")
        for attr in self.sensitive_attributes:
            if attr not in ATTRIBUTES:
                raise ValueError(
                    f"task {self.name!r}: unknown sensitive attribute {attr!r}; "
                    f"expected one of {', '.join(ATTRIBUTES)}"
                )
        mapping = dict(self.finding_to_class) or {c: c for c in self.classes}
        for finding, cls in mapping.items():
            if finding not in FINDINGS:
                raise ValueError(f"task {self.name!r}: unknown finding {finding!r}")
            if cls not in self.classes:
                raise ValueError(f"task {self.name!r}: {finding!r} maps to unknown class {cls!r}")
        object.__setattr__(self, "finding_to_class", MappingProxyType(mapping))
        if self.channels not in (1, 3):
            raise ValueError(f"task {self.name!r}: channels must be 1 or 3, got {self.channels}")

    def class_of(self, finding: str | None) -> str | None:
        """The task class of a finding, or None when the finding is outside the task."""
        return self.finding_to_class.get(finding) if finding is not None else None

    def group_of(self, row: Mapping[str, object]) -> tuple[str | None, ...]:
        """The subgroup of a sample: its values of the sensitive attributes, in order."""
        return tuple(row[a] for a in self.sensitive_attributes)  # type: ignore[misc]

    def cell_keys(self, ds: datasets.Dataset) -> list[tuple[tuple[str | None, ...], str | None]]:
        """The (subgroup, class) cell of every row of ``ds``, in row order: the task's one
        grouper (class is None for a finding outside the task)."""
        cols = ds.select_columns([*self.sensitive_attributes, "finding"]).to_dict()
        groups = zip(*(cols[a] for a in self.sensitive_attributes), strict=True)
        return [(tuple(g), self.class_of(f)) for g, f in zip(groups, cols["finding"], strict=True)]

    def prompt(self, group: Mapping[str, str | None], cls: str) -> str:
        values = {a: (v if v is not None else "unknown") for a, v in group.items()}
        values = {a: v.replace("_", " ") for a, v in values.items()}
        return self.prompt_template.format(finding=cls.replace("_", " "), **values)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "dataset": self.dataset,
            "classes": list(self.classes),
            "finding_to_class": dict(self.finding_to_class),
            "sensitive_attributes": list(self.sensitive_attributes),
            "image_size": self.image_size,
            "channels": self.channels,
            "prompt_template": self.prompt_template,
            "split_salt": self.split_salt,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Task:
        """Inverse of :meth:`as_dict`."""
        return cls(
            **{
                **d,
                "classes": tuple(d["classes"]),
                "sensitive_attributes": tuple(d["sensitive_attributes"]),
                "finding_to_class": dict(d["finding_to_class"]),
            }
        )


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    return TASKS.register(task.name, task)


DEFAULT_TASK = "phantom-cxr-finding"

register_task(
    Task(
        name="phantom-cxr-finding",
        description="chest X-ray phantom, 5-way finding; subgroups by sex and age group",
        dataset="phantom-cxr",
        classes=("no_finding", "cardiomegaly", "pleural_effusion", "lung_opacity", "edema"),
        sensitive_attributes=("sex", "age_group"),
        image_size=64,
        channels=1,
        prompt_template="chest x-ray, {sex}, age {age_group}, {finding}",
    )
)

# FairGen's brain MRI task: demented vs non-demented, subgroups by age band (< 75 / >= 75).
register_task(
    Task(
        name="phantom-brain-dementia",
        description="brain MRI phantom, dementia vs none (FairGen); subgroups by age band "
        "(<75 / >=75)",
        dataset="phantom-brain",
        classes=("no_finding", "dementia"),
        sensitive_attributes=("age_band",),
        image_size=64,
        channels=1,
        prompt_template="T1 brain MRI, age {age_band}, {finding}",
    )
)

# FairGen's skin task: five Fitzpatrick17k diseases, subgroups by tone group (light I-II,
# medium III-IV, dark V-VI).
register_task(
    Task(
        name="phantom-skin-disease",
        description="skin phantom, 5 diseases (FairGen); subgroups by skin tone group "
        "(light / medium / dark)",
        dataset="phantom-skin",
        classes=(
            "allergic_contact_dermatitis",
            "basal_cell_carcinoma",
            "lichen_planus",
            "psoriasis",
            "squamous_cell_carcinoma",
        ),
        sensitive_attributes=("skin_tone_group",),
        image_size=64,
        channels=3,
        prompt_template="dermatology photo, {skin_tone_group} skin, {finding}",
    )
)

# FairGen's chest task: COVID-19, edema, lung opacity, pleural effusion, normal; subgroups by sex.
register_task(
    Task(
        name="phantom-cxr-fairgen",
        description="chest X-ray phantom, FairGen 5-way (COVID-19, edema, lung opacity, pleural "
        "effusion, normal); subgroups by sex",
        dataset="phantom-cxr",
        classes=("covid_19", "edema", "lung_opacity", "pleural_effusion", "no_finding"),
        sensitive_attributes=("sex",),
        image_size=64,
        channels=1,
        prompt_template="chest x-ray, {sex}, {finding}",
    )
)

# The cardiac metadata task: healthy vs heart failure, subgroups by sex and WHO BMI class.
register_task(
    Task(
        name="phantom-cardiac-hf",
        description="cardiac cine MRI phantom (ED and ES frames), heart failure vs none; "
        "subgroups by sex and BMI class",
        dataset="phantom-cardiac",
        classes=("no_finding", "heart_failure"),
        sensitive_attributes=("sex", "bmi_class"),
        image_size=64,
        channels=1,
        prompt_template="cardiac short-axis cine MRI, {sex}, BMI {bmi_class}, {finding}",
    )
)
