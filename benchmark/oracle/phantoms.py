"""What the oracles and the diagnostic generators need to know about each phantom.

A :class:`PhantomSpec` says, for one phantom dataset, which schema attributes its images
carry (and how to read them from the generating parameters), and how to draw the parameters
of any (finding, subgroup) cell. It is the one bridge between the phantoms
(:class:`benchmark.data.phantoms.Phantom`) and everything that uses their ground truth; the
findings, channels, version, renderer and reference constraints are the phantom's own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import DATASETS
from ..data.phantoms import PHANTOMS, Phantom
from ..registry import Registry
from ..schema import ATTRIBUTES, derive_attributes


class NotAPhantomError(ValueError):
    """Something that needs the phantom's ground truth was used on a dataset that has none."""


@dataclass(frozen=True)
class PhantomSpec:
    """The ground-truth interface of one phantom.

    Attributes:
        phantom: the phantom (its ``findings`` are the oracle's ``finding`` head, in order;
            ``channels``, ``version``, ``render``, ``reference_params``, ``cache_key``,
            ``majority_phenotype``).
        attributes: schema attributes an oracle predicts (derived from the base values).
        base_values: the base schema values (``sex``, ``age``, ``skin_tone``, ``bmi``) that an
            image truly shows, read from its parameters (for the skin phantom the *rendered*
            Fitzpatrick type, also when the recorded type is unknown).
        balance: attributes whose values, crossed with the findings, define the cells of a
            balanced oracle training population.
    """

    phantom: Phantom
    attributes: tuple[str, ...]
    base_values: Callable[[Any], Mapping[str, object]]
    balance: tuple[str, ...]

    @property
    def dataset(self) -> str:
        """The dataset registry name (``phantom-cxr``)."""
        return self.phantom.name

    @property
    def findings(self) -> tuple[str, ...]:
        return tuple(self.phantom.findings)

    @property
    def channels(self) -> int:
        return int(self.phantom.channels)

    @property
    def version(self) -> str:
        return str(self.phantom.version)

    def truth(self, params: Any) -> dict[str, str | None]:
        """The finding, phenotype and every attribute of :attr:`attributes` an image shows."""
        values: dict[str, object] = {"sex": None, "age": None, "skin_tone": None, "bmi": None}
        values.update(self.base_values(params))
        derived = derive_attributes(values)
        out: dict[str, str | None] = {"finding": params.finding,
                                      "phenotype": str(params.phenotype)}
        for attr in self.attributes:
            out[attr] = derived[attr] if attr in derived else values[attr]  # type: ignore
        return out

    def base_row(self, params: Any) -> dict[str, object]:
        """The schema's base and derived attribute columns of an image, from its parameters."""
        values: dict[str, object] = {"sex": None, "age": None, "race": None, "skin_tone": None,
                                     "bmi": None}
        values.update(self.base_values(params))
        values.update(derive_attributes(values))
        return values

    def render(self, params: Any, image_size: int) -> np.ndarray:
        """The uint8 image of ``params`` at ``image_size`` pixels."""
        return self.phantom.render(params, image_size)

    def cells(self) -> list[dict[str, str]]:
        """Every (finding x :attr:`balance` values) cell the phantom can draw."""
        out: list[dict[str, str]] = [{}]
        for attr in self.balance:
            out = [{**c, attr: v} for c in out for v in ATTRIBUTES[attr]]
        cells = []
        for finding in self.findings:
            for c in out:
                cell = {"finding": finding, **c}
                if self.possible(cell):
                    cells.append(cell)
        return cells

    def possible(self, cell: Mapping[str, str | None]) -> bool:
        """Whether the phantom can draw ``cell`` (tried with a small draw)."""
        try:
            draw_cell_params(self, 1, cell, seed=0, max_rounds=4)
        except ValueError:
            return False
        return True

    def majority_phenotype(self, params: Any) -> Any:
        """The same patient drawn with the majority subgroup's appearance of its finding.

        Raises:
            NotImplementedError: the phantom has no subgroup-specific phenotype to erase.
        """
        return self.phantom.majority_phenotype(params)


PHANTOM_SPECS: Registry[PhantomSpec] = Registry("phantom")


def register_phantom_spec(spec: PhantomSpec) -> PhantomSpec:
    return PHANTOM_SPECS.register(spec.dataset, spec)


def phantom_spec(dataset: str, *, who: str = "this") -> PhantomSpec:
    """The spec of a phantom dataset.

    Raises:
        NotAPhantomError: ``dataset`` is a real dataset or unknown (the message names the
            phantoms that exist and who asked).
    """
    if dataset in PHANTOM_SPECS:
        return PHANTOM_SPECS.get(dataset)
    known = ", ".join(PHANTOM_SPECS.names())
    kind = ("a real dataset" if dataset in DATASETS and not DATASETS.get(dataset).phantom
            else "not a phantom")
    raise NotAPhantomError(
        f"{who} needs the ground truth of a phantom dataset, but {dataset!r} is {kind}; it works "
        f"only on phantom tasks (datasets: {known})"
    )


def stream_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (a named stream): distinct parts give independent seeds."""
    blob = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


def draw_cell_params(
    spec: PhantomSpec,
    n: int,
    cell: Mapping[str, str | None],
    *,
    seed: int,
    max_rounds: int = 60,
) -> list[Any]:
    """Parameters of ``n`` fresh images of one cell (``finding`` and attribute values).

    Constraints the phantom's ``reference_params`` accepts are passed to it; the others (e.g. a
    ``skin_tone_group`` or an ``age_group`` the phantom samples through ``age``) are met by
    rejection: draws whose :meth:`PhantomSpec.truth` does not match are discarded. A value of
    ``None`` leaves that attribute free. Deterministic per ``(cell, seed)``.

    Raises:
        ValueError: an attribute the phantom has no value for, an unknown value, or a cell the
            phantom cannot draw (e.g. chest X-rays of patients under 18).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return []
    wanted = {k: v for k, v in cell.items() if v is not None}
    accepted = set(spec.phantom.constraints)
    for key, value in wanted.items():
        if key not in accepted and key not in spec.attributes and key != "finding":
            raise ValueError(
                f"{spec.dataset} images have no {key!r} (asked {key}={value!r}); its attributes "
                f"are {', '.join(spec.attributes)}"
            )
        vocab = spec.findings if key == "finding" else ATTRIBUTES.get(key)
        if vocab is not None and value not in vocab:
            raise ValueError(f"unknown {key} {value!r} for {spec.dataset}; expected one of "
                             f"{', '.join(vocab)}")
    direct = {k: v for k, v in wanted.items() if k in accepted}
    filtered = {k: v for k, v in wanted.items() if k not in accepted}
    out: list[Any] = []
    batch = max(2 * n, 32) if filtered else n
    for round_ in range(max_rounds):
        try:
            draws = spec.phantom.reference_params(batch, seed=stream_seed(seed, round_),
                                                 **direct)
        except ValueError as err:
            raise ValueError(f"{spec.dataset} cannot draw cell {dict(wanted)}: {err}") from err
        for p in draws:
            t = spec.truth(p)
            if all(t.get(k) == v for k, v in filtered.items()):
                out.append(p)
                if len(out) == n:
                    return out
    raise ValueError(
        f"{spec.dataset}: cell {dict(wanted)} is too rare to draw {n} images ({len(out)} found "
        f"in {max_rounds} rounds of {batch})"
    )


def draw_population(
    spec: PhantomSpec, n: int, *, seed: int, stream: str, cells: Sequence[Mapping] | None = None
) -> list[Any]:
    """``n`` parameters balanced over ``cells`` (default :meth:`PhantomSpec.cells`), cell by
    cell in order; the first ``n mod len(cells)`` cells get one more."""
    cells = list(cells) if cells is not None else spec.cells()
    q, r = divmod(int(n), len(cells))
    out: list[Any] = []
    for i, cell in enumerate(cells):
        k = q + (1 if i < r else 0)
        out.extend(draw_cell_params(spec, k, cell, seed=stream_seed(stream, seed, i, *sorted(
            cell.items()))))
    return out


register_phantom_spec(PhantomSpec(
    phantom=PHANTOMS.get("phantom-cxr"),
    attributes=("sex", "age_group", "age_band"),
    base_values=lambda p: {"sex": p.sex, "age": p.age},
    balance=("sex", "age_group"),
))

register_phantom_spec(PhantomSpec(
    phantom=PHANTOMS.get("phantom-skin"),
    attributes=("skin_tone", "skin_tone_group"),
    base_values=lambda p: {"skin_tone": p.fitzpatrick},
    balance=("skin_tone",),
))

register_phantom_spec(PhantomSpec(
    phantom=PHANTOMS.get("phantom-brain"),
    attributes=("sex", "age_group", "age_band"),
    base_values=lambda p: {"sex": p.sex, "age": p.age},
    balance=("sex", "age_band"),
))

register_phantom_spec(PhantomSpec(
    phantom=PHANTOMS.get("phantom-cardiac"),
    attributes=("sex", "age_group", "bmi_class"),
    base_values=lambda p: {"sex": p.sex, "age": p.age, "bmi": p.bmi},
    balance=("sex", "bmi_class"),
))
