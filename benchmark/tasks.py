"""Tasks are data: a dataset, a class mapping, sensitive attributes, image size and budget.

A task owns its evaluation protocol: which attributes define subgroups (its
:class:`~benchmark.grouping.Grouper`, ``task.grouper``, the one source of group labels and of
the policy for unknown values), how a sample's finding maps to the task's class, and the
headline metrics it is ranked by (:mod:`benchmark.headline`). A new task is a few lines of
:func:`register_task`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import datasets

from .grouping import Grouper, label_of
from .headline import default_headline_metrics
from .headline import parse as parse_headline
from .registry import Registry
from .schema import ATTRIBUTES, FINDINGS, column

log = logging.getLogger(__name__)


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
        held_out_groups: subgroups (tuples of sensitive-attribute values, in order) whose rows
            are removed from the training split (counted in the log) and kept in val/test:
            CompDiff's zero-shot intersections. Empty for most tasks.
        fid_subsets: ``(subset_size, repeats)``: also report each feature space's Fréchet
            distance on ``repeats`` random subsets of ``subset_size`` images (mean, std and
            the real-vs-real lower bound; the cardiac paper's protocol,
            :func:`~benchmark.metrics.frechet.repeated_subset_fid`), overall and per group of
            each attribute. Empty: not reported.
        headline_metrics: the result keys the leaderboard ranks the task by
            (:mod:`benchmark.headline`); empty: :func:`~benchmark.headline.default_headline_metrics`
            (FID, ES-FID over all attributes together, the real+synthetic classifier's
            accuracy and its worst-group accuracy per attribute).
        synthetic_per_class: the per-class synthetic budgets the task's protocol declares
            (presets; e.g. the sketch paper's 200 and 300 images per class on
            ``sketch-mimic``). Empty (most tasks): a run's budget is the profile's
            ``synthetic_ratio`` x the training images unless the run asks for N per class
            (any N >= 1). Declared: a run's budget is N images per class, the first preset
            unless the run names another, and only a declared preset is accepted
            (:func:`~benchmark.generators.resolve_budget`).
        grouper: the task's :class:`~benchmark.grouping.Grouper` (derived, not an argument).
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
    held_out_groups: tuple[tuple[str, ...], ...] = ()
    fid_subsets: tuple[int, ...] = ()
    headline_metrics: tuple[str, ...] = ()
    synthetic_per_class: tuple[int, ...] = ()
    grouper: Grouper = field(init=False, repr=False, compare=False)

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
        held = tuple(tuple(g) for g in self.held_out_groups)
        for group in held:
            if len(group) != len(self.sensitive_attributes):
                raise ValueError(f"task {self.name!r}: held-out group {group} needs one value "
                                 f"per sensitive attribute {self.sensitive_attributes}")
            for attr, value in zip(self.sensitive_attributes, group, strict=True):
                if value not in ATTRIBUTES[attr]:
                    raise ValueError(f"task {self.name!r}: held-out group {group}: unknown "
                                     f"{attr} {value!r}")
        object.__setattr__(self, "held_out_groups", held)
        subsets = tuple(self.fid_subsets)
        if subsets and (len(subsets) != 2 or not all(isinstance(v, int) for v in subsets)
                        or subsets[0] < 2 or subsets[1] < 1):
            raise ValueError(f"task {self.name!r}: fid_subsets must be (subset_size >= 2, "
                             f"repeats >= 1), got {self.fid_subsets!r}")
        object.__setattr__(self, "fid_subsets", subsets)
        presets = tuple(self.synthetic_per_class)
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in presets) or \
                len(set(presets)) != len(presets):
            raise ValueError(f"task {self.name!r}: synthetic_per_class must be distinct "
                             f"integers >= 1, got {self.synthetic_per_class!r}")
        object.__setattr__(self, "synthetic_per_class", presets)
        if self.channels not in (1, 3):
            raise ValueError(f"task {self.name!r}: channels must be 1 or 3, got {self.channels}")
        grouper = Grouper(self.sensitive_attributes)
        object.__setattr__(self, "grouper", grouper)
        headline = (tuple(self.headline_metrics)
                    or default_headline_metrics(self.sensitive_attributes))
        for key in headline:
            try:
                parse_headline(key, groupings=list(grouper.groupings),
                               attributes=self.sensitive_attributes)
            except ValueError as err:
                raise ValueError(f"task {self.name!r}: {err}") from None
        if len(set(headline)) != len(headline):
            raise ValueError(f"task {self.name!r}: a headline metric is listed twice")
        object.__setattr__(self, "headline_metrics", headline)

    def class_of(self, finding: str | None) -> str | None:
        """The task class of a finding, or None when the finding is outside the task."""
        return self.finding_to_class.get(finding) if finding is not None else None

    def group_of(self, row: Mapping[str, object]) -> tuple[str | None, ...]:
        """The subgroup of a sample: its values of the sensitive attributes, in order."""
        return tuple(row[a] for a in self.sensitive_attributes)  # type: ignore[misc]

    def cell_keys(self, ds: datasets.Dataset) -> list[tuple[tuple[str | None, ...], str | None]]:
        """The (subgroup, class) cell of every row of ``ds``, in row order: the subgroup is the
        grouper's tuple of attribute values (None where unknown), the class None for a finding
        outside the task."""
        groups = self.grouper.values(ds)
        findings = column(ds, "finding")
        return [(g, self.class_of(f)) for g, f in zip(groups, findings, strict=True)]

    def select(self, ds: datasets.Dataset) -> datasets.Dataset:
        """The rows of ``ds`` (all splits) this task uses: rows whose finding maps to one of
        its classes, less the training rows of its held-out groups (CompDiff-style zero-shot
        intersections: they are scored, never trained on). Every filtered row is counted in
        the log; rows with an unknown sensitive attribute are kept (and counted)."""
        findings = column(ds, "finding")
        dropped = Counter(f for f in findings if self.class_of(f) is None)
        if dropped:
            log.info("task %s: filtered out %d rows whose finding is outside the task: %s",
                     self.name, sum(dropped.values()), dict(dropped))
            ds = ds.select([i for i, f in enumerate(findings) if self.class_of(f) is not None])
        if self.held_out_groups:
            held = set(self.held_out_groups)
            drop = {i for i, ((g, _), s) in enumerate(zip(self.cell_keys(ds), column(ds, "split"),
                                                          strict=True))
                    if s == "train" and g in held}
            if drop:
                log.info("task %s: removed %d training rows of the held-out groups %s",
                         self.name, len(drop), sorted(held))
                ds = ds.select([i for i in range(len(ds)) if i not in drop])
        for attr in self.sensitive_attributes:
            unknown = sum(v is None for v in column(ds, attr))
            if unknown:
                log.info("task %s: %d rows have unknown %s (kept, as their own group)",
                         self.name, unknown, attr)
        return ds

    def prompt(self, group: Mapping[str, str | None], cls: str) -> str:
        values = {a: label_of(v) for a, v in group.items()}
        values = {a: v.replace("_", " ") for a, v in values.items()}
        return self.prompt_template.format(finding=cls.replace("_", " "), **values)

    def as_dict(self) -> dict:
        out = {
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
        if self.held_out_groups:  # only when set, so other tasks' config hashes are unchanged
            out["held_out_groups"] = [list(g) for g in self.held_out_groups]
        if self.fid_subsets:  # (likewise)
            out["fid_subsets"] = list(self.fid_subsets)
        if self.headline_metrics != default_headline_metrics(self.sensitive_attributes):
            out["headline_metrics"] = list(self.headline_metrics)  # (likewise)
        if self.synthetic_per_class:  # (likewise)
            out["synthetic_per_class"] = list(self.synthetic_per_class)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Task:
        """Inverse of :meth:`as_dict`."""
        return cls(
            **{
                **d,
                "classes": tuple(d["classes"]),
                "sensitive_attributes": tuple(d["sensitive_attributes"]),
                "finding_to_class": dict(d["finding_to_class"]),
                "held_out_groups": tuple(tuple(g) for g in d.get("held_out_groups", ())),
                "fid_subsets": tuple(d.get("fid_subsets", ())),
                "headline_metrics": tuple(d.get("headline_metrics", ())),
                "synthetic_per_class": tuple(d.get("synthetic_per_class", ())),
            }
        )


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    return TASKS.register(task.name, task)


DEFAULT_TASK = "phantom-cxr-finding"


def fairgen_headline(*attributes: str) -> tuple[str, ...]:
    """FairGen's tasks: the default headline plus the real+synthetic classifier's ES-ACC
    (FairGen's ESSP) per attribute, the number FairGen reports its fairness by."""
    return (*default_headline_metrics(attributes),
            *(f"downstream.real+synthetic.es_acc[{a}]" for a in attributes))


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

# CompDiff's zero-shot intersections on the embedded default: the chest phantom's 5-way task
# with two sex x age-group cells removed from training (kept in val / test, generated by
# every run; the evaluation's "held_out" section scores them apart from the seen cells).
register_task(
    Task(
        name="phantom-cxr-heldout",
        description="chest X-ray phantom, 5-way finding x sex x age group; female 80+ and "
        "male 18-39 held out of training (CompDiff's unseen intersections)",
        dataset="phantom-cxr",
        classes=("no_finding", "cardiomegaly", "pleural_effusion", "lung_opacity", "edema"),
        sensitive_attributes=("sex", "age_group"),
        image_size=64,
        channels=1,
        prompt_template="chest x-ray, {sex}, age {age_group}, {finding}",
        held_out_groups=(("female", "80+"), ("male", "18-39")),
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
        headline_metrics=fairgen_headline("age_band"),
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
        headline_metrics=fairgen_headline("skin_tone_group"),
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
        headline_metrics=fairgen_headline("sex"),
    )
)

#: The cardiac paper's FID protocol (Skorupko et al.): random 500-image subsets, repeated
#: (R is not stated; 10 here), mean (std) beside the real-vs-real lower bound.
CARDIAC_FID_SUBSETS = (500, 10)

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
        fid_subsets=CARDIAC_FID_SUBSETS,
    )
)


# --------------------------------------------------------------------------------------------
# Real-data tasks: the seed papers' settings (loaders in benchmark/data/real/, cards in
# data_cards/). Each needs --root with the user's local copy.

#: Findings of the FairGen chest task (CheXpert + COVID-19 image data collection).
# FairGen's chest classes (its paper and code): COVID-19, Edema, Lung Opacity, Pleural
# Effusion, Normal; how CheXpert's labels map: data_cards/covid19.md
CHEST_CLASSES = ("covid_19", "edema", "lung_opacity", "pleural_effusion", "no_finding")

register_task(
    Task(
        name="fairgen-chest",
        description="CheXpert + COVID-19 collection chest X-rays, 5 findings x sex (FairGen)",
        dataset="chexpert-covid19",
        classes=CHEST_CLASSES,
        sensitive_attributes=("sex",),
        image_size=256,
        channels=1,
        prompt_template="chest x-ray, {sex}, {finding}",
        headline_metrics=fairgen_headline("sex"),
    )
)

register_task(
    Task(
        name="chexpert-sex",
        description="CheXpert chest X-rays, 5 findings x sex (single-dataset variant of "
        "fairgen-chest without COVID-19)",
        dataset="chexpert",
        classes=("no_finding", "pneumonia", "pleural_effusion", "cardiomegaly", "edema"),
        sensitive_attributes=("sex",),
        image_size=256,
        channels=1,
        prompt_template="chest x-ray, {sex}, {finding}",
    )
)

register_task(
    Task(
        name="fairgen-skin",
        description="Fitzpatrick17k, FairGen's 5 diseases x light/medium/dark skin",
        dataset="fitzpatrick17k",
        classes=(
            "allergic_contact_dermatitis",
            "basal_cell_carcinoma",
            "lichen_planus",
            "psoriasis",
            "squamous_cell_carcinoma",
        ),
        sensitive_attributes=("skin_tone_group",),
        image_size=256,
        channels=3,
        prompt_template="dermatology photo, {skin_tone_group} skin, {finding}",
        headline_metrics=fairgen_headline("skin_tone_group"),
    )
)

register_task(
    Task(
        name="fairgen-brain",
        description="OASIS-1 axial T1 MRI slices, demented (CDR > 0) vs not x age < 75 / >= 75",
        dataset="oasis1",
        classes=("no_finding", "dementia"),
        sensitive_attributes=("age_band",),
        image_size=176,
        channels=1,
        prompt_template="T1 brain MRI, age {age_band}, {finding}",
        headline_metrics=fairgen_headline("age_band"),
    )
)

#: The 14 CheXpert-labeller observations of MIMIC-CXR (the sketch paper's classes).
MIMIC_FINDINGS = (
    "no_finding", "enlarged_cardiomediastinum", "cardiomegaly", "lung_opacity", "lung_lesion",
    "edema", "consolidation", "pneumonia", "atelectasis", "pneumothorax", "pleural_effusion",
    "pleural_other", "fracture", "support_devices",
)

#: The sketch paper's downstream ablation (Kim & Hong 2025): 200 or 300 synthetic images per
#: class added to 20,000 real training images. 200, the smaller (cheaper) of the two and the
#: first the paper lists, is the task's default; ``--synthetic-per-class 300`` is the other.
SKETCH_PER_CLASS = (200, 300)

register_task(
    Task(
        name="sketch-mimic",
        description="MIMIC-CXR-JPG frontal views, 14 CheXpert findings x sex (sketch paper)",
        dataset="mimic-cxr",
        classes=MIMIC_FINDINGS,
        sensitive_attributes=("sex",),
        image_size=256,
        channels=1,
        prompt_template="chest x-ray, {sex}, {finding}",
        synthetic_per_class=SKETCH_PER_CLASS,
    )
)

register_task(
    Task(
        name="compdiff-mimic",
        description="MIMIC-CXR-JPG, no finding vs pleural effusion x sex x race; female-asian "
        "and male-black held out of training (CompDiff)",
        dataset="mimic-cxr",
        classes=("no_finding", "pleural_effusion"),
        sensitive_attributes=("sex", "race"),
        image_size=256,
        channels=1,
        prompt_template="chest x-ray, {sex}, {race}, {finding}",
        held_out_groups=(("female", "asian"), ("male", "black")),
    )
)

register_task(
    Task(
        name="cardiac-acdc-bmi",
        description="ACDC cine MRI mid-ventricular ED slices, healthy vs heart failure x WHO "
        "BMI class",
        dataset="acdc",
        classes=("no_finding", "heart_failure"),
        sensitive_attributes=("bmi_class",),
        image_size=128,
        channels=1,
        prompt_template="cardiac cine MRI, {bmi_class}, {finding}",
        fid_subsets=CARDIAC_FID_SUBSETS,
    )
)

register_task(
    Task(
        name="cardiac-mnms-sex",
        description="M&Ms cine MRI mid-ventricular ED slices, healthy vs heart failure x sex",
        dataset="mnms",
        classes=("no_finding", "heart_failure"),
        sensitive_attributes=("sex",),
        image_size=128,
        channels=1,
        prompt_template="cardiac cine MRI, {sex}, {finding}",
        fid_subsets=CARDIAC_FID_SUBSETS,
    )
)
