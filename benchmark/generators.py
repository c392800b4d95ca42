"""The Generator protocol, its registry, and the allocation plan.

Every method and baseline is a :class:`Generator` subclass registered by name. The harness
finds generators through the ``fairsynth_bench.generators`` entry-point group (see
pyproject.toml) and never imports a method package by name.

A :class:`Plan` says how many synthetic images each (subgroup, class) cell needs, with the
prompt for that cell. :func:`allocate` builds the default plan: the synthetic budget is
water-filled into the cells with the fewest training images, so that after augmentation the
cells are as equal in size as the budget allows. A run's :class:`Budget` says how large the
budget is: the profile's ratio of the training set over all cells, or N images per class, each
class's over that class's cells (:func:`resolve_budget`).
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import datasets
import numpy as np

from .profiles import Profile
from .registry import Registry
from .schema import column
from .tasks import Task

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Plan


@dataclass(frozen=True)
class Conditioning:
    """The per-image conditioning of one requested image: the ``sample_id`` of the real
    sample it is derived from and a control image (a sketch, a segmentation mask; a PIL
    image), each ``None`` when the method uses none. Sampled rows carry both on as
    ``source_id`` and ``control``; the synthetic folder records them (``source_id``,
    ``control_path``)."""

    source_id: str | None = None
    control: Any = None


NO_CONDITIONING = Conditioning()


@dataclass(frozen=True)
class PlanRow:
    """One cell of a plan: a subgroup (values of the task's sensitive attributes), a class,
    how many images to generate, the prompt that describes the cell, and optionally one
    :class:`Conditioning` per requested image (empty: no per-image conditioning)."""

    group: tuple[tuple[str, str | None], ...]
    finding: str
    count: int
    prompt: str
    conditioning: tuple[Conditioning, ...] = ()

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"plan cell {self.attributes} / {self.finding}: count {self.count} "
                             "< 0")
        if self.conditioning and len(self.conditioning) != self.count:
            raise ValueError(
                f"plan cell {self.attributes} / {self.finding}: {len(self.conditioning)} "
                f"conditioning entries for {self.count} images; expected one per image")

    @property
    def attributes(self) -> dict[str, str | None]:
        return dict(self.group)

    def conditioning_of(self, j: int) -> Conditioning:
        """The conditioning of the cell's ``j``-th image (:data:`NO_CONDITIONING` if none)."""
        return self.conditioning[j] if self.conditioning else NO_CONDITIONING


@dataclass(frozen=True)
class GroupScore:
    """The majority score of one patient group (:func:`majority_scores`): its size, its
    share |D_K| / |D| of the training set, its heterogeneity S_K, the score M_K and whether
    the majority-score allocation gives it synthetic images."""

    group: tuple[tuple[str, str | None], ...]
    size: int
    share: float
    heterogeneity: float
    score: float
    selected: bool = False

    def as_record(self) -> dict[str, Any]:
        return {"group": dict(self.group), "size": self.size, "share": self.share,
                "heterogeneity": self.heterogeneity, "score": self.score,
                "selected": self.selected}


@dataclass(frozen=True)
class Plan:
    """An allocation plan: which subgroup x class cells need how many images."""

    task: str
    attributes: tuple[str, ...]
    rows: tuple[PlanRow, ...]
    seed: int = 0
    #: the allocation strategy that built the plan (a name in :data:`ALLOCATIONS`)
    allocation: str = "water-fill"
    #: per-group scores of a strategy that ranks groups (majority score), else empty
    group_scores: tuple[GroupScore, ...] = ()
    #: the run's budget rule (:class:`Budget`; the runner sets it), None when not known
    budget: Budget | None = None

    @property
    def total(self) -> int:
        return sum(r.count for r in self.rows)

    def as_records(self) -> list[dict[str, Any]]:
        """One record per cell (``plan.csv``); ``conditioned`` counts the cell's images that
        carry a source sample or a control image; with group scores, ``majority_score`` and
        ``selected`` are the cell's group's; with a budget, ``budget`` is its rule
        (:meth:`Budget.label`: ``ratio=0.5`` or ``per-class=200``)."""
        scores = {g.group: g for g in self.group_scores}
        out = []
        for r in self.rows:
            rec = {**r.attributes, "finding": r.finding, "count": r.count, "prompt": r.prompt,
                   "conditioned": sum(c.source_id is not None or c.control is not None
                                      for c in r.conditioning)}
            if self.budget is not None:
                rec["budget"] = self.budget.label()
            if r.group in scores:
                rec["majority_score"] = scores[r.group].score
                rec["selected"] = scores[r.group].selected
            out.append(rec)
        return out

    def allocation_record(self) -> dict[str, Any]:
        """What the result record keeps of the allocation: the strategy, where it ranks
        groups each group's score (:meth:`GroupScore.as_record`), and the budget rule with
        the plan's total (:meth:`Budget.as_record`) when the plan has one."""
        out: dict[str, Any] = {"strategy": self.allocation,
                               "groups": [g.as_record() for g in self.group_scores]}
        if self.budget is not None:
            out["budget"] = {**self.budget.as_record(), "total": self.total}
        return out


# --------------------------------------------------------------------------------------------
# Budget

#: The budget rules a run can use (:class:`Budget`).
BUDGET_RULES = ("ratio", "per-class")


@dataclass(frozen=True)
class Budget:
    """How many synthetic images a run asks for, and how they are grouped.

    ``ratio``: round(``ratio`` x |train|) images in all, spread over all the task's cells by
    the allocation strategy (the profile's ``synthetic_ratio``; the default of most tasks).
    ``per-class``: ``per_class`` = N images for every class of the task, each class's N
    spread over that class's subgroup cells by the allocation strategy (the sketch paper's
    200 / 300 per class; :attr:`Task.synthetic_per_class`). Build it with
    :func:`resolve_budget`, which validates N against the task.
    """

    rule: str
    ratio: float | None = None
    per_class: int | None = None

    def __post_init__(self) -> None:
        if self.rule == "ratio":
            ok = self.ratio is not None and self.per_class is None and self.ratio >= 0
        elif self.rule == "per-class":
            ok = isinstance(self.per_class, int) and not isinstance(self.per_class, bool) \
                and self.per_class >= 1 and self.ratio is None
        else:
            ok = False
        if not ok:
            raise ValueError(f"budget {self.rule!r} (ratio={self.ratio!r}, per_class="
                             f"{self.per_class!r}): expected rule 'ratio' with a ratio >= 0 or "
                             "'per-class' with an integer per_class >= 1")

    def request(self, train_size: int, task: Task) -> int | dict[str, int]:
        """The budget an allocation strategy is given: the number of images over all cells
        (``ratio``), or each of the task's classes mapped to N (``per-class``)."""
        if self.rule == "ratio":
            return round(self.ratio * train_size)
        return {cls: self.per_class for cls in task.classes}

    def label(self) -> str:
        """``ratio=<r>`` or ``per-class=<N>`` (``plan.csv``'s ``budget`` column)."""
        return f"ratio={self.ratio:g}" if self.rule == "ratio" else f"per-class={self.per_class}"

    def as_record(self) -> dict[str, Any]:
        """``{"rule": "ratio", "ratio": r}`` or ``{"rule": "per-class", "per_class": N}``."""
        if self.rule == "ratio":
            return {"rule": "ratio", "ratio": self.ratio}
        return {"rule": "per-class", "per_class": self.per_class}


def resolve_budget(task: Task, profile: Profile, per_class: object = None) -> Budget:
    """The budget of a run of ``task`` under ``profile``.

    ``per_class`` None: the task's default, N = its first declared preset
    (:attr:`Task.synthetic_per_class`) where it declares any, else the profile's
    ``synthetic_ratio``. ``per_class`` N: N images per class; it must be an integer >= 1 and,
    on a task that declares presets, one of them (the task's protocol). Anything else is a
    ValueError of one line naming the value and what was expected.
    """
    presets = task.synthetic_per_class
    if per_class is None:
        if presets:
            return Budget("per-class", per_class=presets[0])
        return Budget("ratio", ratio=float(profile.synthetic_ratio))
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"--synthetic-per-class {per_class!r}: expected an integer >= 1 "
                         "(synthetic images per class)")
    if presets and per_class not in presets:
        raise ValueError(f"--synthetic-per-class {per_class}: task {task.name!r} declares "
                         f"{describe_presets(presets)}; expected one of them")
    return Budget("per-class", per_class=per_class)


def describe_presets(presets: Sequence[int]) -> str:
    """``200 (default), 300``: a task's per-class presets, the default marked."""
    return ", ".join(f"{n} (default)" if i == 0 else str(n) for i, n in enumerate(presets))


def attach_sources(plan: Plan, train: datasets.Dataset, task: Task, *, seed: int,
                   control: str | Callable[[dict[str, Any]], Any] | None = None,
                   images_per_source: int = 1) -> Plan:
    """The plan with every requested image tied to a real training sample of its own cell.

    Cell c's images take the cell's training samples in a seeded random order, cycling, so
    every sample is used once before any is used twice (a cell of n samples asked for k
    images uses each ``k // n`` or ``k // n + 1`` times). With ``images_per_source`` m > 1
    a cell asked for k images uses only the first min(n, ceil(k / m)) samples of that order,
    cycling over them (a method that derives m images from each real case, e.g. several
    sketches of it). ``control`` gives each image a control image: the name of an image
    column of the source row (e.g. ``"mask"``, the cardiac ControlNet's "synthetic copy"), or
    a function of the source row (e.g. one that draws a sketch). A cell with images to make
    but no training sample is an error.
    """
    if images_per_source < 1:
        raise ValueError(f"images_per_source={images_per_source}: expected an integer >= 1")
    keys = task.cell_keys(train)
    members: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    picks: list[list[int]] = []
    for c, row in enumerate(plan.rows):
        cell = (tuple(v for _, v in row.group), row.finding)
        pool = members.get(cell, [])
        if row.count and not pool:
            raise ValueError(f"plan cell {row.attributes} / {row.finding} has no training "
                             "sample to derive its images from")
        order = np.random.default_rng([seed, c]).permutation(pool) if pool else []
        use = min(len(order), -(-row.count // images_per_source)) if row.count else 0
        picks.append([int(order[j % use]) for j in range(row.count)])
    needed = sorted({i for p in picks for i in p})
    source = train.select(needed)
    at = {i: k for k, i in enumerate(needed)}
    ids = column(source, "sample_id")
    rows = []
    for row, p in zip(plan.rows, picks, strict=True):
        conds = []
        for i in p:
            ctl = None
            if isinstance(control, str):
                ctl = source[at[i]][control]
            elif control is not None:
                ctl = control(source[at[i]])
            conds.append(Conditioning(source_id=ids[at[i]], control=ctl))
        rows.append(replace(row, conditioning=tuple(conds)))
    return replace(plan, rows=tuple(rows))


def cell_counts(ds: datasets.Dataset, task: Task) -> Counter:
    """Number of rows of ``ds`` in each (subgroup tuple, class) cell of ``task``."""
    return Counter(task.cell_keys(ds))


def water_fill(counts: Sequence[int], budget: int) -> list[int]:
    """Split ``budget`` over cells so the smallest cells are raised first.

    Finds the level L with sum_c max(0, L - n_c) = budget and gives cell c max(0, L - n_c)
    images, rounded down; the leftover units go to the cells with the largest fractional
    parts (ties to the smaller cell, then the earlier one). The result sums to ``budget``.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if not counts:
        if budget:
            raise ValueError("cannot allocate a positive budget to no cells")
        return []
    order = sorted(range(len(counts)), key=lambda i: counts[i])
    level = float(counts[order[0]])
    remaining = float(budget)
    k = 0
    while k < len(order):
        # raise the k+1 smallest cells together up to the next count (or spend the rest)
        k += 1
        next_level = counts[order[k]] if k < len(order) else math.inf
        step = min(next_level - level, remaining / k)
        level += step
        remaining -= step * k
        if remaining <= 1e-9:
            break
    raw = [max(0.0, level - n) for n in counts]
    out = [int(math.floor(x + 1e-9)) for x in raw]
    short = budget - sum(out)
    ranked = sorted(range(len(counts)), key=lambda i: (-(raw[i] - out[i]), counts[i], i))
    for i in ranked[:short]:
        out[i] += 1
    return out


def _observed_cells(train: datasets.Dataset, task: Task
                    ) -> tuple[Counter, list[tuple[tuple[str | None, ...], str]]]:
    """The training counts of the task's observed (subgroup, class) cells, in plan order; rows
    outside the task's classes and cells without a training image are counted in the log.
    The task's held-out groups (:attr:`Task.held_out_groups`, removed from training on purpose)
    are the exception: their cells (x every class) are included as cells of 0 training
    images, so every run generates the unseen intersections its evaluation scores apart."""
    counts = cell_counts(train, task)
    outside = sum(n for (_, cls), n in counts.items() if cls is None)
    if outside:
        log.info("allocation: %d training rows have a finding outside the task's classes and "
                 "are not counted", outside)
    counts = Counter({c: n for c, n in counts.items() if c[1] is not None})
    held = [(g, c) for g in task.held_out_groups for c in task.classes]
    if held:
        log.info("allocation: %d cells of the held-out groups %s are requested (0 training "
                 "images)", len(held), list(task.held_out_groups))
        counts.update({cell: 0 for cell in held})
    cells = sorted(counts, key=lambda c: (tuple(v or "" for v in c[0]), c[1]))
    observed_groups = {g for g, _ in cells if g not in task.held_out_groups}
    n_possible = len(observed_groups) * len(task.classes)
    if n_possible > len(cells) - len(held):
        log.info(
            "allocation: %d of %d subgroup x class cells have no training image and get none",
            n_possible - (len(cells) - len(held)),
            n_possible,
        )
    return counts, cells


def _fill(task: Task, counts: Mapping, cells: Sequence[tuple[tuple[str | None, ...], str]],
          budget: int | Mapping[str, int], eligible: Sequence | None = None) -> list[int]:
    """Each cell's share of ``budget`` (in the order of ``cells``): an int is water-filled
    (:func:`water_fill`) over the ``eligible`` cells (default: all); a mapping class -> count
    water-fills each class's count over the eligible cells of that class (a class the
    mapping leaves out gets none). Other cells get 0. A class asked for images but without an
    eligible cell, or a class outside the task, is a ValueError naming it."""
    eligible = list(cells if eligible is None else eligible)
    if not isinstance(budget, Mapping):
        filled = dict(zip(eligible, water_fill([counts[c] for c in eligible], budget),
                          strict=True))
        return [filled.get(c, 0) for c in cells]
    unknown = [c for c in budget if c not in task.classes]
    if unknown:
        raise ValueError(f"per-class budget names {', '.join(map(repr, unknown))}, not a class "
                         f"of task {task.name!r}; expected {', '.join(task.classes)}")
    filled = {}
    for cls, n in budget.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"per-class budget of class {cls!r} is {n!r}; expected an "
                             "integer >= 0")
        pool = [c for c in eligible if c[1] == cls]
        if n and not pool:
            raise ValueError(f"per-class budget: class {cls!r} of task {task.name!r} has no "
                             f"cell to place its {n} images in (no training image of it in "
                             f"the {'selected ' if len(eligible) < len(cells) else ''}groups)")
        filled.update(zip(pool, water_fill([counts[c] for c in pool], n), strict=True))
    return [filled.get(c, 0) for c in cells]


def _plan_of(task: Task, cells: Sequence[tuple[tuple[str | None, ...], str]],
             shares: Sequence[int], seed: int, **fields: Any) -> Plan:
    rows = []
    for (group, finding), n in zip(cells, shares, strict=True):
        named = tuple(zip(task.sensitive_attributes, group, strict=True))
        rows.append(PlanRow(named, finding, n, task.prompt(dict(named), finding)))
    return Plan(task.name, task.sensitive_attributes, tuple(rows), seed, **fields)


def allocate(train: datasets.Dataset, task: Task, budget: int | Mapping[str, int], *,
             seed: int = 0) -> Plan:
    """The default plan: water-fill ``budget`` images into the task's observed cells.

    Cells are (subgroup, class) pairs that occur in ``train``; a cell with no training image
    cannot be learned from, so it gets nothing (the number of such empty cells is logged).
    ``budget`` is the number of images over all cells, or a mapping class -> images, each
    class's water-filled over that class's cells (a per-class :class:`Budget`).
    """
    counts, cells = _observed_cells(train, task)
    return _plan_of(task, cells, _fill(task, counts, cells, budget), seed)


def _pair_mismatch_sum(values: Sequence[Any]) -> float:
    """sum over pairs i < j of 1(values_i != values_j) = (n^2 - sum_v n_v^2) / 2."""
    n = len(values)
    return (n * n - sum(k * k for k in Counter(values).values())) / 2


def _pair_abs_diff_sum(values: Sequence[float]) -> float:
    """sum over pairs i < j of |g_i - g_j| = sum_k g_(k) (2k - n + 1), g sorted (k from 0)."""
    g = np.sort(np.asarray(values, dtype=float))
    k = np.arange(len(g))
    return float(np.sum(g * (2 * k - len(g) + 1)))


def majority_scores(train: datasets.Dataset, task: Task) -> tuple[GroupScore, ...]:
    """The majority score of each of the task's demographic subgroups in ``train``.

    Kim & Hong (2025, "Multi-Modal Medical Image Augmentation for Controlled Heterogeneity
    and Fair Outcomes"), for a patient group K of the training set D::

        M_K  = 1/2 (|D_K| / |D| + S_K)
        S_K  = mean over pairs i < j in D_K of d_ij
        d_ij = 1/3 [ (1/C) sum_c 1(v_c^i != v_c^j) + |g^i - g^j| / g_max + 1(s^i != s^j) ]

    v is the label vector over the task's C classes (the classes of the row's ``labels``
    and of its ``finding``), g the age (g_max the largest age in D), s the sex. A low M_K is
    a small, homogeneous group: it is augmented first. The paper does not define K; here K
    is the task's subgroup (its sensitive attributes' values), so the terms of an attribute
    that defines the groups (sex on a sex-stratified task) are 0 within a group. Pair sums
    are computed in closed form (:func:`_pair_mismatch_sum`, :func:`_pair_abs_diff_sum`).
    A missing age or sex leaves that term's mean over the pairs where both values are known
    (a term with no such pair is left out of the mean of the three; the number of rows with a
    missing value is logged); a group of one sample has S_K = 0. Rows outside the task's
    classes are not in D.
    """
    keys = task.cell_keys(train)
    labels = column(train, "labels") if "labels" in train.column_names else [None] * len(keys)
    ages, sexes = column(train, "age"), column(train, "sex")
    index = {c: i for i, c in enumerate(task.classes)}
    members: dict[tuple, list[int]] = {}
    for i, (group, cls) in enumerate(keys):
        if cls is not None:
            members.setdefault(group, []).append(i)
    total = sum(len(m) for m in members.values())
    if not total:
        raise ValueError(f"majority score: no training row of task {task.name!r} has one of "
                         f"its classes ({', '.join(task.classes)})")
    known_ages = [ages[i] for m in members.values() for i in m if ages[i] is not None]
    g_max = max(known_ages, default=0.0)
    missing = {"age": sum(ages[i] is None for m in members.values() for i in m),
               "sex": sum(sexes[i] is None for m in members.values() for i in m)}
    if any(missing.values()):
        log.info("majority score: rows with a missing value (term left out for their pairs): "
                 "%s", missing)
    out = []
    for group in sorted(members, key=lambda g: tuple(v or "" for v in g)):
        rows = members[group]
        n = len(rows)
        terms = []
        if n > 1:
            vec = np.zeros((n, len(task.classes)), dtype=bool)
            for r, i in enumerate(rows):
                vec[r, index[keys[i][1]]] = True
                for f in labels[i] or ():
                    cls = task.class_of(f)
                    if cls is not None:
                        vec[r, index[cls]] = True
            on = vec.sum(axis=0)
            terms.append(float(np.sum(on * (n - on))) / len(task.classes) / (n * (n - 1) / 2))
            g = [ages[i] for i in rows if ages[i] is not None]
            if len(g) > 1 and g_max > 0:
                terms.append(_pair_abs_diff_sum(g) / g_max / (len(g) * (len(g) - 1) / 2))
            s = [sexes[i] for i in rows if sexes[i] is not None]
            if len(s) > 1:
                terms.append(_pair_mismatch_sum(s) / (len(s) * (len(s) - 1) / 2))
        hetero = float(np.mean(terms)) if terms else 0.0
        share = n / total
        named = tuple(zip(task.sensitive_attributes, group, strict=True))
        out.append(GroupScore(named, n, share, hetero, 0.5 * (share + hetero)))
    return tuple(out)


def allocate_majority_score(train: datasets.Dataset, task: Task,
                            budget: int | Mapping[str, int], *, seed: int = 0) -> Plan:
    """A plan for the groups with a low majority score (:func:`majority_scores`).

    The groups whose score M_K is at most the mean score of the task's groups are selected
    (the lowest always is; with equal scores, every group); the budget is water-filled
    (:func:`water_fill`) over the observed cells of the selected groups, and the other
    groups' cells get none; a per-class budget (a mapping class -> images) water-fills each
    class's images over the selected groups' cells of that class. The plan carries every
    group's score.
    """
    scores = majority_scores(train, task)
    mean = float(np.mean([g.score for g in scores]))
    scores = tuple(replace(g, selected=g.score <= mean + 1e-12) for g in scores)
    chosen = {tuple(v for _, v in g.group) for g in scores if g.selected}
    log.info("majority score: %d of %d groups selected (M_K <= mean %.4f)", len(chosen),
             len(scores), mean)
    counts, cells = _observed_cells(train, task)
    picked = [c for c in cells if c[0] in chosen]
    return _plan_of(task, cells, _fill(task, counts, cells, budget, picked), seed,
                    allocation="majority-score", group_scores=scores)


#: An allocation strategy: (train, task, budget, *, seed) -> Plan; ``budget`` is an int (the
#: images over all cells) or a mapping class -> images (each class's images over its own
#: cells: a per-class :class:`Budget`, :meth:`Budget.request`).
Allocation = Callable[..., Plan]

#: The allocation strategies by name (``benchmark run --allocation NAME``).
ALLOCATIONS: Registry[Allocation] = Registry("allocation strategy")
ALLOCATIONS.register("water-fill", allocate)
ALLOCATIONS.register("majority-score", allocate_majority_score)


# --------------------------------------------------------------------------------------------
# Generator protocol


@dataclass(frozen=True)
class FitContext:
    """What a generator may know about the run it is trained in (``profile`` is the run's
    :class:`~benchmark.profiles.Profile`, not its name)."""

    task: Task
    profile: Profile
    seed: int
    device: str = "cpu"
    work_dir: Path | None = None
    #: the fitted base model's checkpoint folder when the generator declares a base
    #: (:attr:`Generator.base`; the runner fits or reuses it), else None
    base_checkpoint: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.profile, Profile):
            raise TypeError(f"FitContext.profile must be a benchmark.Profile (e.g. "
                            f"PROFILES.get('smoke')), got {self.profile!r}")


# --------------------------------------------------------------------------------------------
# Options

#: The type(s) an option accepts.
OptionType = type | tuple[type, ...]


class OptionError(ValueError):
    """A generator option with an unknown name or a value of the wrong type or range; the
    message is one line naming the option, the value and what was expected."""


def _type_names(types: tuple[type, ...], nullable: bool) -> str:
    names = [t.__name__ for t in types] + (["None"] if nullable else [])
    return " or ".join(names)


def check_option_value(owner: str, key: str, value: Any, types: tuple[type, ...], *,
                       nullable: bool) -> Any:
    """``value`` if it has one of ``types`` (``None`` only when ``nullable``), else an
    :class:`OptionError`. ``bool`` is not an ``int``; a ``float`` option takes an ``int``
    (returned as a float, so ``lr=1`` and ``lr=1.0`` are the same config) and must be
    finite."""
    if value is None:
        if nullable:
            return None
    else:
        for t in types:
            if t is float and isinstance(value, int | float) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise OptionError(f"{owner}: option {key}={value!r}: expected a finite "
                                      "float")
                return float(value)
            if t is int and isinstance(value, bool):
                continue
            if t is bool and not isinstance(value, bool):
                continue
            if isinstance(value, t):
                return value
    raise OptionError(f"{owner}: option {key}={value!r} is {type(value).__name__}; expected "
                      f"{_type_names(types, nullable)}")


# --------------------------------------------------------------------------------------------
# Generator protocol


class Generator(ABC):
    """Base class of every method and baseline.

    Subclasses set ``name``, ``description`` and ``default_config`` (every option with its
    default), and implement :meth:`fit` and :meth:`sample`. The constructor rejects unknown
    options and values of the wrong type (:class:`OptionError`), so a typo is an error, not a
    silently ignored setting. An option's type is its default's, or the one declared in
    ``option_types`` (required for an option whose default is ``None``, which then also
    accepts ``None``).

    Options whose default depends on the run profile are ``None`` in ``default_config`` and
    get their value from :meth:`profile_defaults`; :meth:`resolve` fills them in. The runner
    calls :meth:`resolve` once, before it writes ``config.json``, and builds the generator it
    fits from the resolved options, so the run config (and its hash) holds the values that
    actually run.

    A method that continues from another model (a preference stage on a fine-tuned model, a
    ControlNet on a frozen base) names that method in ``base`` (and its options in
    :meth:`base_config`); the runner fits the base as an ordinary run of that method on the
    same task, profile and seed, or reuses it when a run with the same resolved config (hence
    config hash) exists, and passes its checkpoint folder as ``FitContext.base_checkpoint``
    (load it with ``GENERATORS.get(base).load(folder)``). The base's config hash is part of
    the method's run config.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_config: ClassVar[Mapping[str, Any]] = {}
    #: Type(s) of options whose default is None (others take their default's type).
    option_types: ClassVar[Mapping[str, OptionType]] = {}
    #: The registered name of the method this one continues from (None: no base model).
    base: ClassVar[str | None] = None
    #: The allocation strategy (:data:`ALLOCATIONS`) of the method's runs unless the run
    #: names another (``benchmark run --allocation``).
    allocation: ClassVar[str] = "water-fill"
    #: Columns every training row must have (not None) besides the schema's required ones,
    #: e.g. ``("mask",)`` for a mask-conditioned method; the runner checks them before
    #: fitting and stops with one line naming the column and the task.
    required_columns: ClassVar[tuple[str, ...]] = ()
    #: Show progress bars in fit/sample; the runner sets it (False under ``--quiet``).
    progress: bool = True

    def base_config(self) -> dict[str, Any]:
        """Options of the base method (resolved against the run's profile by the runner);
        default: the base method's defaults."""
        return {}

    def downstream_overrides(self) -> dict[str, Any]:
        """Fields of the profile's :class:`~benchmark.downstream.DownstreamConfig` this method's
        protocol changes for its run (e.g. FairGen's sampler reweighting); they apply to every
        classifier of the run, its real-only reference row included, and are part of the run
        config. Default: none."""
        return {}

    def __init__(self, config: Mapping[str, Any] | None = None):
        self.config: dict[str, Any] = {**self.default_config, **self.check_config(config or {})}

    # -- options ----------------------------------------------------------------------------
    @classmethod
    def option_type(cls, key: str) -> tuple[tuple[type, ...], bool]:
        """(accepted types, whether None is accepted) of option ``key``."""
        default = cls.default_config[key]
        declared = cls.option_types.get(key)
        if declared is None:
            if default is None:
                raise TypeError(f"{cls.name or cls.__name__}: option {key!r} defaults to None "
                                "and has no type in option_types")
            declared = type(default)
        types = declared if isinstance(declared, tuple) else (declared,)
        return types, default is None

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` with each value type-checked (:func:`check_option_value`); an unknown
        key or a wrong type is an :class:`OptionError`."""
        owner = cls.name or cls.__name__
        out: dict[str, Any] = {}
        for key, value in config.items():
            if key not in cls.default_config:
                raise OptionError(
                    f"{owner}: unknown option {key}={value!r}; valid: "
                    f"{', '.join(sorted(cls.default_config)) or '(none)'}")
            types, nullable = cls.option_type(key)
            out[key] = check_option_value(owner, key, value, types, nullable=nullable)
        return out

    @classmethod
    def profile_defaults(cls, profile: Profile) -> dict[str, Any]:
        """The values that options left ``None`` take under ``profile`` (base: none). A
        subclass reads them from the Profile (e.g. ``profile.diffusion``) and adds its own
        per-profile defaults here, so each method has one place for them."""
        return {}

    def resolve(self, profile: Profile) -> dict[str, Any]:
        """The options that run under ``profile``: every ``None`` with a profile default
        replaced by it (the base class has none: its options are returned as they are).
        Resolving resolved options changes nothing."""
        defaults = type(self).profile_defaults(profile)
        return {k: (defaults[k] if v is None and k in defaults else v)
                for k, v in self.config.items()}

    # -- protocol ---------------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: datasets.Dataset, ctx: FitContext) -> None:
        """Train on the task's training split."""

    def condition_plan(self, plan: Plan, train: datasets.Dataset) -> Plan:
        """The plan this generator samples: ``plan`` with the method's per-image conditioning
        added (e.g. :func:`attach_sources`). The runner calls it after allocation, before
        :meth:`sample`. Default: the plan unchanged."""
        return plan

    @abstractmethod
    def sample(self, plan: Plan) -> datasets.Dataset:
        """Generate the plan's images as rows of the standard schema
        (``source`` = ``synthetic:<name>``; ``source_id`` and ``control`` from the plan's
        :class:`Conditioning` where it has any)."""

    def report(self) -> dict[str, Any]:
        """What the method wants in the result record beside the metrics (``method_report``;
        e.g. FairGen's stage times and preference-pair adherence). Default: nothing."""
        return {}

    def save(self, directory: str | Path) -> None:
        """Write everything :meth:`load` needs into ``directory`` (the default: the config)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "generator.json").write_text(
            json.dumps({"name": self.name, "config": self.config}, indent=2, sort_keys=True)
        )

    @classmethod
    def load(cls, directory: str | Path) -> Generator:
        """Rebuild a generator saved by :meth:`save`."""
        meta = json.loads((Path(directory) / "generator.json").read_text())
        if meta["name"] != cls.name:
            raise ValueError(f"{directory} holds a {meta['name']!r} generator, not {cls.name!r}")
        return cls(meta["config"])


def _check_generator(name: str, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Generator)):
        raise TypeError(f"generator {name!r} must be a subclass of benchmark.Generator")
    if obj.name != name:
        raise ValueError(f"generator class {obj.__name__} has name {obj.name!r}, registered as "
                         f"{name!r}")
    for key in obj.default_config:
        obj.option_type(key)  # an option defaulting to None must declare its type
    ALLOCATIONS.get(obj.allocation)  # its default allocation strategy exists


GENERATORS: Registry[type[Generator]] = Registry(
    "method", entry_point_group="fairsynth_bench.generators", check=_check_generator
)


def register_generator(cls: type[Generator]) -> type[Generator]:
    """Class decorator: register a Generator subclass under its ``name``."""
    GENERATORS.register(cls.name, cls)
    return cls
