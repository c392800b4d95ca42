"""The prompt builder: one function turns a sample's attributes and class into its prompt.

Every diffusion method trains and samples with :func:`build_prompt`, so a (subgroup, class)
cell has one prompt. Styles:

``fairgen`` (the default)
    FairGen's class strings: the sensitive-attribute values, then the class, comma-separated:
    ``"female, 80+, pleural effusion"``. Short, so it fits the small profiles' 16-token text
    encoders.
``task``
    The task's own :attr:`benchmark.Task.prompt_template` (what :func:`benchmark.allocate`
    writes into a plan): ``"chest x-ray, female, age 80+, pleural effusion"``.
``fairdiffusion``
    FairDiffusion's sentence: ``"chest radiograph of a 80+ female patient with pleural
    effusion"`` (``"{modality} of a {values} patient with {finding}"``; the modality comes from
    :data:`MODALITY` by the task's dataset).

``fairgen-code``
    The prompts of FairGen's public code: the values, then the class in title case, spaces
    only: ``"female Pleural Effusion"``, ``"male COVID19"``, ``"female Normal"``; on skin
    ``"{values} people {disease}"`` (its ``"African people psoriasis"``).

Unknown attribute values read ``"unknown"``; underscores become spaces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..grouping import label_of
from ..tasks import Task

PROMPT_STYLES: tuple[str, ...] = ("fairgen", "task", "fairdiffusion", "fairgen-code")

# how FairGen's public code names our classes in its prompts (others: title case)
FAIRGEN_CODE_NAMES: Mapping[str, str] = {"no_finding": "Normal", "covid_19": "COVID19"}

# the imaging modality named in sentence-style prompts, by dataset name prefix
MODALITY: Mapping[str, str] = {
    "phantom-cxr": "chest radiograph",
    "chexpert": "chest radiograph",
    "mimic-cxr": "chest radiograph",
    "phantom-skin": "dermatology photo",
    "fitzpatrick17k": "dermatology photo",
    "phantom-brain": "T1 brain MRI",
    "oasis": "T1 brain MRI",
}


def _text(value: object) -> str:
    return label_of(value).replace("_", " ")


def modality_of(task: Task) -> str:
    for prefix, name in MODALITY.items():
        if task.dataset.startswith(prefix):
            return name
    return "medical image"


def build_prompt(task: Task, attributes: Mapping[str, object], finding: str, *,
                 style: str = "fairgen", omit: Sequence[str] = ()) -> str:
    """The prompt of a sample (or plan cell) with these sensitive-attribute values and class.

    ``attributes`` must hold every sensitive attribute of ``task`` (extra keys are ignored, so
    a whole sample row can be passed); ``finding`` must be one of the task's classes.
    ``omit``: sensitive attributes whose words are left out of the prompt (a method that
    conditions on them another way, e.g. CompDiff's demographic token); not with style
    ``task`` (its template names every attribute).
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(PROMPT_STYLES)}")
    missing = [a for a in task.sensitive_attributes if a not in attributes]
    if missing:
        raise ValueError(f"prompt for task {task.name!r}: missing attribute(s) "
                         f"{', '.join(missing)}")
    if finding not in task.classes:
        raise ValueError(f"prompt for task {task.name!r}: {finding!r} is not a class; "
                         f"expected one of {', '.join(task.classes)}")
    unknown = [a for a in omit if a not in task.sensitive_attributes]
    if unknown:
        raise ValueError(f"prompt for task {task.name!r}: cannot omit {', '.join(unknown)}: not "
                         f"a sensitive attribute ({', '.join(task.sensitive_attributes)})")
    if omit and style == "task":
        raise ValueError("prompt style 'task' names every attribute; it cannot omit any")
    group = {a: attributes[a] for a in task.sensitive_attributes if a not in omit}
    if style == "task":
        return task.prompt(group, finding)  # type: ignore[arg-type]
    values = [_text(v) for v in group.values()]
    if style == "fairgen":
        return ", ".join([*values, _text(finding)])
    if style == "fairgen-code":
        name = FAIRGEN_CODE_NAMES.get(finding) or _text(finding).title()
        people = ["people"] if modality_of(task) == "dermatology photo" else []
        return " ".join([*values, *people, name])
    return f"{modality_of(task)} of a {' '.join(values)} patient with {_text(finding)}"
