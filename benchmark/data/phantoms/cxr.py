"""The chest X-ray phantom: procedural frontal radiographs calibrated to real CheXpert counts.

Every image is drawn from an explicit generative model whose parameters are all known (the
"oracle truth", :class:`CXRParams`), so a benchmark can check a generator against ground
truth for any subgroup, however rare. The data card ``data_cards/phantom_cxr.md`` documents
every parameter and its effect.

Generative model
----------------
1. **Patients.** A patient's ``(sex, age_group)`` cell is drawn with probability proportional
   to its number of calibration images (below); the age is drawn from the empirical CheXpert
   ages of that cell; the anatomy (thorax size, diaphragm, heart, aortic knob, bone density,
   kyphosis, breast shadows, body habitus, parenchymal texture) is drawn once per patient and
   depends on sex and age. The number of images (studies) of a patient follows CheXpert's
   frontal images-per-patient distribution, capped at :data:`MAX_IMAGES_PER_PATIENT`.
2. **Images.** Each image has one finding of :data:`CXR_FINDINGS`, drawn from the calibrated
   ``P(finding | sex, age_group)``; a follow-up study repeats the previous study's finding with
   probability :data:`FINDING_PERSISTENCE`, else draws afresh, which keeps the marginal
   distribution exact. Each image also has its own pose (shift, rotation, scale), inspiration
   depth, exposure, contrast, blur and noise.
3. **Rendering** (:func:`render`) adds attenuations (soft tissue, lung air, bones, fluid and
   opacities) in normalised coordinates, so any resolution works, then applies a film curve
   ``1 - exp(-k A)``, a blur and noise.

COVID-19 (FairGen's chest task): CheXpert has none, so the phantom adds ``covid_19`` rows to
the calibration table (:func:`joint_counts`): :data:`COVID_FRACTION` of all images,
:data:`COVID_MALE_FRACTION` of them men, age groups within sex like CheXpert's lung-opacity
images (documented assumptions). It is drawn as bilateral, peripheral, lower-zone, patchy
ground-glass opacities, unlike the focal, one-sided ``lung_opacity`` and edema's perihilar haze.

Subgroup-specific phenotypes (the same finding looks different in a minority subgroup):
pleural effusion in patients aged 80+ is always bilateral, larger, flatter and denser; and
cardiomegaly in women is a globular heart that widens to both sides (in men it extends left
and down, apex displaced). Older patients also have lower bone density everywhere.

Calibration (CheXpert ``train.csv``, shipped inside ``torchxrayvision``)
------------------------------------------------------------------------
``<torchxrayvision>/data/chexpert_train.csv.gz`` (223,414 rows) is read with pandas:

1. keep frontal images (``Frontal/Lateral == "Frontal"``);
2. keep ``Sex`` in {Male, Female} (drops ``Unknown``);
3. keep ``Age > 0`` (0 codes a missing age); ``age_group = schema.age_to_group(Age)``;
4. a target finding is positive when its column is exactly ``1.0`` (``-1.0`` uncertain, ``0.0``
   and blank are not positive); the targets are Cardiomegaly, Pleural Effusion, Lung Opacity
   and Edema;
5. the single label is ``no_finding`` when ``No Finding == 1.0`` and no target is positive,
   else the one positive target when exactly one is; rows with two or more positive targets,
   and rows with no positive target and ``No Finding != 1.0``, are excluded (counted in
   :func:`calibration_summary`).

The joint ``sex x age_group x finding`` counts of the kept rows are
:func:`chexpert_joint_counts`. Ages per ``(sex, age_group)`` are the empirical integer ages
of the kept rows (CheXpert records 90 for every age of 90 and above). Images per patient are
counted over steps 1-3 (patient = the ``patientNNNNN`` folder of ``Path``). Only these
aggregate counts are used; no row-level data leaves the CSV.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from ...schema import AGE_GROUPS, SEX, age_to_group
from ._common import (
    check_choice,
    stable_uniform,
)
from .base import Phantom, register_phantom

log = logging.getLogger(__name__)

#: The CheXpert findings the phantom is calibrated to.
CHEXPERT_FINDINGS: tuple[str, ...] = (
    "no_finding",
    "cardiomegaly",
    "pleural_effusion",
    "lung_opacity",
    "edema",
)
#: Every finding of the phantom: CheXpert's five plus COVID-19 (FairGen's chest task combines
#: CheXpert with the COVID-19 image data collection).
CXR_FINDINGS: tuple[str, ...] = (*CHEXPERT_FINDINGS, "covid_19")

#: Share of COVID-19 images among all phantom images (an assumption: CheXpert has no COVID-19;
#: FairGen adds the COVID-19 image data collection's few hundred frontal COVID-19 images, a
#: small minority next to CheXpert; 5 % keeps the class rare but learnable at default sizes).
COVID_FRACTION = 0.05
#: Share of men among COVID-19 images (an assumption: hospitalised COVID-19 cohorts, and the
#: collection's images, skew male). Ages within sex follow CheXpert's lung-opacity images.
COVID_MALE_FRACTION = 0.6

#: Bump whenever sampling or rendering changes: it is part of every cache key.
PHANTOM_VERSION = "cxr-2"

SOURCE = "phantom-cxr"

#: Images per patient are drawn from CheXpert's distribution with counts above this lumped.
MAX_IMAGES_PER_PATIENT = 5

#: Probability that a follow-up study repeats the previous study's finding.
FINDING_PERSISTENCE = 0.5

CHEXPERT_FILE = "chexpert_train.csv.gz"

# CheXpert column -> phantom finding, for the four target findings.
_TARGETS: dict[str, str] = {
    "Cardiomegaly": "cardiomegaly",
    "Pleural Effusion": "pleural_effusion",
    "Lung Opacity": "lung_opacity",
    "Edema": "edema",
}
_SEX_CODES = {"Female": "female", "Male": "male"}


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def chexpert_csv_path() -> Path:
    """Path of CheXpert's ``train.csv`` inside the installed ``torchxrayvision`` package.

    The package is located without importing it. Raises :class:`FileNotFoundError` naming the
    file and the fix when the package or the file is absent.
    """
    hint = (
        f"the chest X-ray phantom is calibrated to CheXpert's train.csv ({CHEXPERT_FILE}), "
        "which ships inside the torchxrayvision package; install it with "
        "`pip install torchxrayvision`"
    )
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"torchxrayvision is not installed: {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / CHEXPERT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {hint}")
    return path


@dataclass(frozen=True)
class _Calibration:
    joint: pd.DataFrame  # the phantom's table: CheXpert's counts plus the COVID-19 rows
    chexpert: pd.DataFrame  # sex, age_group, finding, count (every combination, zeros included)
    ages: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # cell -> (ages, probs)
    images_per_patient: np.ndarray  # P(k images), k = 1..MAX_IMAGES_PER_PATIENT
    summary: dict[str, object]
    digest: str


@functools.lru_cache(maxsize=1)
def _calibration() -> _Calibration:
    path = chexpert_csv_path()
    columns = ["Path", "Sex", "Age", "Frontal/Lateral", "No Finding", *_TARGETS]
    try:
        df = pd.read_csv(path, usecols=columns)
    except ValueError as err:  # a missing column
        raise ValueError(f"{path}: expected columns {columns}: {err}") from err
    summary: dict[str, object] = {"rows": len(df)}

    frontal = df[df["Frontal/Lateral"] == "Frontal"]
    summary["frontal"] = len(frontal)
    known_sex = frontal[frontal["Sex"].isin(list(_SEX_CODES))]
    summary["excluded_unknown_sex"] = len(frontal) - len(known_sex)
    known = known_sex[known_sex["Age"] > 0]
    summary["excluded_missing_age"] = len(known_sex) - len(known)
    summary["frontal_known_sex_age"] = len(known)

    positive = known[list(_TARGETS)].eq(1.0)
    n_positive = positive.sum(axis=1)
    no_finding = known["No Finding"].eq(1.0) & n_positive.eq(0)
    single = n_positive.eq(1)
    summary["excluded_several_targets"] = int(n_positive.ge(2).sum())
    summary["excluded_no_label"] = int((n_positive.eq(0) & ~no_finding).sum())

    label = pd.Series(pd.NA, index=known.index, dtype="object")
    label[no_finding] = "no_finding"
    label[single] = positive[single].idxmax(axis=1).map(_TARGETS)
    kept = known.assign(finding=label)[no_finding | single]
    kept = kept.assign(
        sex=kept["Sex"].map(_SEX_CODES),
        age_group=[age_to_group(a) for a in kept["Age"]],
    )
    summary["calibration_rows"] = len(kept)

    counts = kept.groupby(["sex", "age_group", "finding"]).size()
    index = pd.MultiIndex.from_product(
        [SEX, AGE_GROUPS, CHEXPERT_FINDINGS], names=["sex", "age_group", "finding"]
    )
    chexpert = counts.reindex(index, fill_value=0).rename("count").reset_index()
    chexpert["count"] = chexpert["count"].astype("int64")
    joint = pd.concat([chexpert, _covid_rows(chexpert)], ignore_index=True)
    summary["covid_images"] = int(joint.loc[joint["finding"] == "covid_19", "count"].sum())

    ages: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for (sex, group), cell in kept.groupby(["sex", "age_group"]):
        vc = cell["Age"].astype(float).value_counts().sort_index()
        ages[(sex, group)] = (vc.index.to_numpy(float), (vc / vc.sum()).to_numpy(float))

    patient = known["Path"].str.extract(r"(patient\d+)", expand=False)
    if patient.isna().any():
        raise ValueError(f"{path}: column Path has values without a patientNNNNN folder")
    per_patient = patient.value_counts().clip(upper=MAX_IMAGES_PER_PATIENT)
    ipp = per_patient.value_counts().reindex(range(1, MAX_IMAGES_PER_PATIENT + 1), fill_value=0)
    summary["patients"] = int(len(per_patient))
    summary["images_per_patient_counts"] = {int(k): int(v) for k, v in ipp.items()}
    images_per_patient = (ipp / ipp.sum()).to_numpy(float)

    h = hashlib.sha256()
    h.update(joint.to_csv(index=False).encode())
    for key in sorted(ages):
        h.update(repr((key, ages[key][0].tolist(), ages[key][1].round(12).tolist())).encode())
    h.update(repr(images_per_patient.round(12).tolist()).encode())
    log.info("phantom-cxr calibration from %s: %s", path, summary)
    return _Calibration(joint, chexpert, ages, images_per_patient, summary, h.hexdigest())


def _covid_rows(chexpert: pd.DataFrame) -> pd.DataFrame:
    """The COVID-19 rows of the phantom's table (:data:`COVID_FRACTION` of all images).

    ``C = round(COVID_FRACTION / (1 - COVID_FRACTION) * N)`` images for ``N`` CheXpert
    calibration images; a share :data:`COVID_MALE_FRACTION` are men; within each sex the age
    groups follow that sex's CheXpert lung-opacity images. Counts are rounded per cell.
    """
    total = COVID_FRACTION / (1.0 - COVID_FRACTION) * float(chexpert["count"].sum())
    opacity = chexpert[chexpert["finding"] == "lung_opacity"].set_index(["sex", "age_group"])
    rows = []
    for sex in SEX:
        share = COVID_MALE_FRACTION if sex == "male" else 1.0 - COVID_MALE_FRACTION
        groups = opacity.loc[sex, "count"]
        for group in AGE_GROUPS:
            n = total * share * float(groups[group]) / float(groups.sum())
            rows.append((sex, group, "covid_19", int(round(n))))
    out = pd.DataFrame(rows, columns=["sex", "age_group", "finding", "count"])
    out["count"] = out["count"].astype("int64")
    return out


def chexpert_joint_counts() -> pd.DataFrame:
    """CheXpert's image counts per ``(sex, age_group, finding)``: the phantom's calibration.

    Columns ``sex``, ``age_group``, ``finding``, ``count``; one row for every combination of
    :data:`~benchmark.schema.SEX`, :data:`~benchmark.schema.AGE_GROUPS` and
    :data:`CHEXPERT_FINDINGS` (zeros included: CheXpert has no patient under 18). The
    derivation is in the module docstring. Cached: the CSV is read once per process; a copy is
    returned.
    """
    return _calibration().chexpert.copy()


def joint_counts() -> pd.DataFrame:
    """The table the phantom samples from: :func:`chexpert_joint_counts` plus the COVID-19
    rows (:data:`COVID_FRACTION`, :data:`COVID_MALE_FRACTION`; see :func:`_covid_rows`)."""
    return _calibration().joint.copy()


def calibration_summary() -> dict[str, object]:
    """Every count of the calibration derivation: rows read, each exclusion, rows kept."""
    return json.loads(json.dumps(_calibration().summary))


def calibration_hash() -> str:
    """sha256 of the calibration tables (joint counts, ages, images per patient)."""
    return _calibration().digest


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CXRParams:
    """Every generating parameter of one phantom image (the oracle truth).

    Coordinates are normalised: ``u`` runs from -1 (image left = patient's right) to 1 across
    the image, ``v`` from -1 (top) to 1 (bottom). Lengths are in the same units (2 = the
    image side). Patient-level fields are shared by all studies of a patient except where
    a finding changes them (``heart_ctr``, ``heart_right_fraction``, ``heart_tilt_deg``).
    """

    # identity
    patient_id: str
    study: int  # 1-based study number of the patient
    sample_id: str
    patient_seed: int  # seeds the patient's parenchymal / vessel texture
    noise_seed: int  # seeds the image's quantum noise
    sex: str
    age: float
    age_group: str
    finding: str
    phenotype: str  # "typical" or the subgroup-specific variant of the finding
    # patient anatomy
    thorax_half_width: float  # half the inner rib-cage width at its widest
    lung_apex_y: float
    lung_base_y: float  # costophrenic level (before inspiration)
    dome_height: float  # hemidiaphragm dome height above the costophrenic level
    right_dome_offset: float  # right hemidiaphragm is this much higher than the left
    body_half_width: float  # lateral soft-tissue outline
    heart_ctr: float  # cardiothoracic ratio: heart width / (2 * thorax_half_width)
    heart_right_fraction: float  # share of the heart width right of the midline
    heart_tilt_deg: float  # tilt of the heart's long axis (apex down towards patient left)
    aortic_knob: float  # 0..1 prominence of the aortic knob (unfolding with age)
    bone_density: float  # scales every bone's attenuation (falls with age)
    kyphosis: float  # 0..1: steeper posterior ribs, higher clavicles
    breast_size: float  # 0 for men
    breast_drop: float  # downward shift of breast shadows (ptosis with age)
    gastric_bubble: float  # 0..1 size of the stomach gas bubble under the left dome
    # image acquisition
    shift_x: float
    shift_y: float
    rotation_deg: float
    scale: float
    inspiration: float  # + lowers the diaphragm (deeper breath)
    exposure: float  # film-curve gain k
    gamma: float
    noise_sigma: float  # std of additive noise on the [0, 1] scale
    blur: float  # Gaussian blur std in normalised units
    # findings (zeros when absent)
    effusion_right: float  # fluid height as a fraction of the lung height
    effusion_left: float
    effusion_meniscus: float  # rise of the meniscus from medial to lateral
    effusion_density: float
    opacity_x: float
    opacity_y: float
    opacity_radius: float
    opacity_density: float
    opacity_seed: int
    edema_severity: float
    covid_severity: float  # density of the ground-glass opacities (0: absent)
    covid_right: float  # upward extent from the base, as a fraction of the lung height
    covid_left: float
    covid_seed: int  # seeds the patchy ground-glass pattern

    @property
    def heart_width(self) -> float:
        """Heart width in normalised units (``heart_ctr * 2 * thorax_half_width``)."""
        return self.heart_ctr * 2.0 * self.thorax_half_width

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def sample_params(
    rng: np.random.Generator,
    n: int,
    *,
    sex: str | None = None,
    age_group: str | None = None,
    finding: str | None = None,
    images_per_patient: str | int = "chexpert",
    id_prefix: str = "cxr",
) -> list[CXRParams]:
    """Draw the parameters of ``n`` images (patients in order, their studies consecutive).

    Args:
        rng: the only source of randomness (same generator state -> same parameters).
        n: number of images.
        sex, age_group, finding: optional constraints; unconstrained attributes follow the
            calibrated conditional distribution given the constrained ones.
        images_per_patient: ``"chexpert"`` (CheXpert's frontal distribution, capped at
            :data:`MAX_IMAGES_PER_PATIENT`) or a fixed positive number.
        id_prefix: prefix of patient ids (``<prefix>-p000123``) and sample ids
            (``<prefix>-p000123-s1``).

    Raises:
        ValueError: an unknown value, or a constraint no calibration image satisfies (CheXpert
            has no patients under 18).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    check_choice("sex", sex, SEX)
    check_choice("age_group", age_group, AGE_GROUPS)
    check_choice("finding", finding, CXR_FINDINGS)
    cal = _calibration()
    if images_per_patient == "chexpert":
        k_probs = cal.images_per_patient
    elif isinstance(images_per_patient, int) and images_per_patient >= 1:
        k_probs = np.zeros(images_per_patient)
        k_probs[-1] = 1.0
    else:
        raise ValueError(
            f"images_per_patient must be 'chexpert' or a positive int, got {images_per_patient!r}"
        )
    if n == 0:
        return []

    joint = cal.joint
    mask = np.ones(len(joint), bool)
    for column, value in (("sex", sex), ("age_group", age_group), ("finding", finding)):
        if value is not None:
            mask &= (joint[column] == value).to_numpy()
    table = joint[mask]
    cells = table.groupby(["sex", "age_group"], sort=True)["count"].sum()
    cells = cells[cells > 0]
    if cells.empty:
        raise ValueError(
            f"no CheXpert calibration images with sex={sex!r}, age_group={age_group!r}, "
            f"finding={finding!r} (CheXpert has no patients under 18), so the phantom "
            "cannot draw them"
        )
    cell_keys = list(cells.index)
    cell_probs = cells.to_numpy(float) / cells.sum()
    # P(finding | cell) restricted to the finding constraint
    cond = np.zeros((len(cell_keys), len(CXR_FINDINGS)))
    for i, (s, g) in enumerate(cell_keys):
        sub = table[(table["sex"] == s) & (table["age_group"] == g)]
        for f, c in zip(sub["finding"], sub["count"], strict=True):
            cond[i, CXR_FINDINGS.index(f)] = c
    cond /= cond.sum(axis=1, keepdims=True)

    # -- patients and their studies
    k = rng.choice(np.arange(1, len(k_probs) + 1), size=n, p=k_probs)
    n_patients = int(np.searchsorted(np.cumsum(k), n) + 1)
    k = k[:n_patients].copy()
    k[-1] -= int(k.sum()) - n  # the last patient keeps only the studies that fit
    P = n_patients
    cell = rng.choice(len(cell_keys), size=P, p=cell_probs)
    p_sex = np.array([cell_keys[c][0] for c in cell])
    p_group = np.array([cell_keys[c][1] for c in cell])
    age = np.empty(P)
    for c, key in enumerate(cell_keys):
        idx = np.flatnonzero(cell == c)
        values, probs = cal.ages[key]
        age[idx] = rng.choice(values, size=idx.size, p=probs)
    male = p_sex == "male"
    female = ~male
    z = rng.standard_normal((12, P))
    uni = rng.random((6, P))
    over50 = np.maximum(age - 50.0, 0.0)
    thorax = np.where(male, 0.70, 0.645) + 0.022 * z[0]
    apex = -0.80 + 0.02 * z[1]
    base = np.where(male, 0.60, 0.565) + 0.025 * z[2] + 0.0012 * (age - 50.0)
    dome = np.clip(0.17 + 0.02 * z[3] - 0.0010 * (age - 50.0), 0.07, 0.26)
    right_dome = np.clip(0.045 + 0.015 * z[4], 0.0, 0.1)
    body = thorax + np.clip(np.where(male, 0.16, 0.18) + 0.035 * z[5], 0.08, 0.3)
    ctr_base = np.clip(
        np.where(male, 0.435, 0.455) + 0.0007 * (age - 50.0) + 0.022 * z[6], 0.36, 0.5
    )
    ctr_big = 0.55 + 0.09 * uni[0]
    right_frac = np.clip(0.34 + 0.025 * z[7], 0.26, 0.42)
    knob = np.clip(0.1 + 0.016 * (age - 40.0) + 0.12 * z[8], 0.0, 1.0)
    bone = np.clip(
        1.0 - 0.0045 * np.maximum(age - 30.0, 0) - np.where(female, 0.006, 0.0) * over50
        + 0.05 * z[9],
        0.3,
        1.1,
    )
    kyph = np.clip((age - 55.0) / 35.0, 0.0, 1.0) * (0.4 + 0.6 * uni[1])
    breast = np.where(female, 0.55 + 0.45 * uni[2], 0.0)
    drop = np.where(female, 0.0022 * np.maximum(age - 30.0, 0) + 0.025 * z[10], 0.0)
    bubble = np.where(uni[3] < 0.3, 0.0, 0.4 + 0.6 * uni[4])
    patient_seed = rng.integers(0, 2**31 - 1, size=P)

    # -- images
    owner = np.repeat(np.arange(P), k)
    study = np.concatenate([np.arange(1, kk + 1) for kk in k])
    img_cell = cell[owner]
    fresh = np.empty(n, int)
    u_f = rng.random(n)
    cum = np.cumsum(cond, axis=1)
    for c in range(len(cell_keys)):
        idx = np.flatnonzero(img_cell == c)
        fresh[idx] = np.minimum(np.searchsorted(cum[c], u_f[idx], side="right"),
                                len(CXR_FINDINGS) - 1)
    keep = rng.random(n) < FINDING_PERSISTENCE
    f_idx = fresh.copy()
    for i in range(1, n):
        if study[i] > 1 and keep[i]:
            f_idx[i] = f_idx[i - 1]
    zi = rng.standard_normal((8, n))
    ui = rng.random((16, n))
    noise_seed = rng.integers(0, 2**31 - 1, size=n)
    opacity_seed = rng.integers(0, 2**31 - 1, size=n)
    covid_seed = rng.integers(0, 2**31 - 1, size=n)

    out: list[CXRParams] = []
    width = max(6, len(str(P)))
    for i in range(n):
        p = owner[i]
        f = CXR_FINDINGS[f_idx[i]]
        s, g, a = str(p_sex[p]), str(p_group[p]), float(age[p])
        phenotype = "typical"
        ctr, rfrac, tilt = float(ctr_base[p]), float(right_frac[p]), 18.0
        eff_r = eff_l = 0.0
        meniscus = density = 0.0
        ox = oy = orad = odens = 0.0
        edema = 0.0
        covid = covid_r = covid_l = 0.0
        if f == "cardiomegaly":
            ctr = float(ctr_big[p])
            if s == "female":  # globular heart widening to both sides
                phenotype = "cardiomegaly_female_globular"
                rfrac, tilt = 0.47 + 0.03 * ui[0, i], 6.0
            else:  # left-ventricular pattern: extends left and down, apex displaced
                rfrac, tilt = 0.3 + 0.04 * ui[0, i], 26.0
        elif f == "pleural_effusion":
            if a >= 80.0:  # large, bilateral, flat, dense
                phenotype = "pleural_effusion_80plus_bilateral"
                eff_r = 0.36 + 0.18 * ui[1, i]
                eff_l = 0.32 + 0.18 * ui[2, i]
                meniscus = 0.05 + 0.04 * ui[3, i]
                density = 1.05
            else:
                side = ui[4, i]
                vol = 0.16 + 0.22 * ui[1, i]
                if side < 0.45:
                    eff_r = vol
                elif side < 0.75:
                    eff_l = vol
                else:
                    eff_r, eff_l = vol, 0.12 + 0.2 * ui[2, i]
                meniscus = 0.13 + 0.1 * ui[3, i]
                density = 0.9
        elif f == "lung_opacity":
            side = -1.0 if ui[5, i] < 0.55 else 1.0
            ox = side * (0.30 + 0.40 * ui[6, i]) * float(thorax[p])
            oy = -0.45 + 0.85 * np.sqrt(ui[7, i])  # more often in the lower zones
            orad = 0.11 + 0.09 * ui[8, i]
            odens = 0.6 + 0.3 * ui[9, i]
        elif f == "edema":
            edema = 0.65 + 0.35 * ui[10, i]
            ctr = min(ctr + 0.03 + 0.03 * ui[11, i], 0.53)
        elif f == "covid_19":  # bilateral, peripheral, lower-zone ground glass
            covid = 0.55 + 0.35 * ui[10, i]
            covid_r = 0.45 + 0.35 * ui[6, i]
            covid_l = 0.45 + 0.35 * ui[7, i]
        pid = f"{id_prefix}-p{p:0{width}d}"
        out.append(
            CXRParams(
                patient_id=pid,
                study=int(study[i]),
                sample_id=f"{pid}-s{int(study[i])}",
                patient_seed=int(patient_seed[p]),
                noise_seed=int(noise_seed[i]),
                sex=s,
                age=a,
                age_group=g,
                finding=f,
                phenotype=phenotype,
                thorax_half_width=float(thorax[p]),
                lung_apex_y=float(apex[p]),
                lung_base_y=float(base[p]),
                dome_height=float(dome[p]),
                right_dome_offset=float(right_dome[p]),
                body_half_width=float(body[p]),
                heart_ctr=float(ctr),
                heart_right_fraction=float(rfrac),
                heart_tilt_deg=float(tilt),
                aortic_knob=float(knob[p]),
                bone_density=float(bone[p]),
                kyphosis=float(kyph[p]),
                breast_size=float(breast[p]),
                breast_drop=float(drop[p]),
                gastric_bubble=float(bubble[p]),
                shift_x=float(0.02 * zi[0, i]),
                shift_y=float(0.02 * zi[1, i]),
                rotation_deg=float(1.5 * zi[2, i]),
                scale=float(1.0 + 0.025 * zi[3, i]),
                inspiration=float(0.025 * zi[4, i]),
                exposure=float(0.88 + 0.24 * ui[12, i]),
                gamma=float(0.95 + 0.35 * ui[13, i]),
                noise_sigma=float(0.012 + 0.018 * ui[14, i]),
                blur=float(0.004 + 0.006 * ui[15, i]),
                effusion_right=float(eff_r),
                effusion_left=float(eff_l),
                effusion_meniscus=float(meniscus),
                effusion_density=float(density),
                opacity_x=float(ox),
                opacity_y=float(oy),
                opacity_radius=float(orad),
                opacity_density=float(odens),
                opacity_seed=int(opacity_seed[i]),
                edema_severity=float(edema),
                covid_severity=float(covid),
                covid_right=float(covid_r),
                covid_left=float(covid_l),
                covid_seed=int(covid_seed[i]),
            )
        )
    return out


def majority_phenotype(params: CXRParams) -> CXRParams:
    """The same image re-drawn with the majority subgroup's appearance of its finding.

    ``cardiomegaly_female_globular`` becomes the men's left-ventricular pattern (men are the
    majority of CheXpert's cardiomegaly images) and ``pleural_effusion_80plus_bilateral`` the
    typical effusion of patients under 80 (the majority). Everything else (patient anatomy,
    acquisition, seeds, attributes, ids) is kept; the random draws of the minority variant
    are mapped to the majority's ranges (the same quantile), and the typical effusion's side
    comes from :func:`~._common.stable_uniform` of the sample id, so the result is
    deterministic. Parameters that already have the majority appearance (``phenotype ==
    "typical"``) are returned unchanged.
    """
    p = params
    if p.phenotype == "cardiomegaly_female_globular":
        u = min(max((p.heart_right_fraction - 0.47) / 0.03, 0.0), 1.0)
        return replace(p, phenotype="typical", heart_right_fraction=0.3 + 0.04 * u,
                       heart_tilt_deg=26.0)
    if p.phenotype == "pleural_effusion_80plus_bilateral":
        u1 = min(max((p.effusion_right - 0.36) / 0.18, 0.0), 1.0)
        u2 = min(max((p.effusion_left - 0.32) / 0.18, 0.0), 1.0)
        u3 = min(max((p.effusion_meniscus - 0.05) / 0.04, 0.0), 1.0)
        side = stable_uniform("cxr-majority-effusion-side", p.sample_id)
        vol = 0.16 + 0.22 * u1
        eff_r = eff_l = 0.0
        if side < 0.45:
            eff_r = vol
        elif side < 0.75:
            eff_l = vol
        else:
            eff_r, eff_l = vol, 0.12 + 0.2 * u2
        return replace(p, phenotype="typical", effusion_right=eff_r, effusion_left=eff_l,
                       effusion_meniscus=0.13 + 0.1 * u3, effusion_density=0.9)
    if p.phenotype != "typical":  # pragma: no cover - a new phenotype must be handled here
        raise ValueError(f"majority_phenotype: unknown CXR phenotype {p.phenotype!r}")
    return p


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = ((np.arange(n) + 0.5) / n * 2.0 - 1.0).astype(np.float32)
    X, Y = np.meshgrid(c, c)
    X.setflags(write=False)
    Y.setflags(write=False)
    return X, Y


def _ramp(z: np.ndarray, w: float) -> np.ndarray:
    """Soft step: 0 for z <= -w, 1 for z >= w, linear between (anti-aliased edges)."""
    return np.minimum(np.maximum(z * (0.5 / w) + 0.5, 0.0), 1.0)


_BANK = 256  # side of the periodic noise fields (pixels)
_BANK_SCALE = 48.0  # bank pixels per normalised unit
_ANGLES = 512  # samples of the periodic angular (vessel) profile


@functools.lru_cache(maxsize=1)
def _noise_bank() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed periodic smooth noise (a fixed seed: identical in every process).

    Returns a coarse and a fine 2-D field (unit variance) and a periodic 1-D angular profile of
    thin peaks (vessels). Textures are looked up at anatomical coordinates plus a per-patient
    offset, which is far cheaper than synthesising a field per image.
    """
    r = np.random.default_rng(20240613)
    fields_ = []
    for sigma in (5.0, 2.0):
        f = ndimage.gaussian_filter(r.standard_normal((_BANK, _BANK)), sigma, mode="wrap")
        f = ((f - f.mean()) / f.std()).astype(np.float32)
        fields_.append(np.pad(f, ((0, 1), (0, 1)), mode="wrap"))
    g = ndimage.gaussian_filter1d(r.standard_normal(_ANGLES), 1.5, mode="wrap")
    g = (g - g.mean()) / g.std()
    vessel = np.clip((g - 0.3) * 1.0, 0.0, 1.0).astype(np.float32)
    return fields_[0], fields_[1], vessel


def _lookup(field: np.ndarray, u: np.ndarray, v: np.ndarray, offset: tuple[float, float],
            scale: float = _BANK_SCALE) -> np.ndarray:
    """Bilinear, periodic lookup of a bank field (padded by one row and column)."""
    x = u * scale + offset[0]
    y = v * scale + offset[1]
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = x - x0
    fy = y - y0
    flat = (y0.astype(np.intp) % _BANK) * (_BANK + 1) + x0.astype(np.intp) % _BANK
    f = field.ravel()
    top = f[flat]
    top += (f[flat + 1] - top) * fx
    bottom = f[flat + _BANK + 1]
    bottom += (f[flat + _BANK + 2] - bottom) * fx
    return top + (bottom - top) * fy


def _offsets(seed: int, k: int) -> list[tuple[float, float]]:
    r = np.random.default_rng(seed)
    return [(float(a), float(b)) for a, b in r.uniform(0.0, _BANK, (k, 2))]


def render(params: CXRParams, image_size: int = 64) -> np.ndarray:
    """Render one phantom radiograph as a ``uint8`` array of shape ``(image_size, image_size)``.

    Geometry is in normalised coordinates, so every resolution shows the same anatomy; edges
    are anti-aliased to at least one pixel. Deterministic: the same params and size give the
    same pixels. Attenuations add up (soft tissue, minus lung air, plus bone scaled by
    ``bone_density``, breast tissue, fluid, opacities); the film curve is
    ``1 - exp(-exposure * A)``, windowed and raised to ``gamma``, then blurred and noised.
    """
    n = int(image_size)
    if n < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    p = params
    px = 2.0 / n

    def w(width: float) -> float:
        return max(width, 0.5 * px)

    X, Y = _grid(n)
    th = math.radians(p.rotation_deg)
    x = (X - p.shift_x) / p.scale
    y = (Y - p.shift_y) / p.scale
    u = math.cos(th) * x + math.sin(th) * y
    v = -math.sin(th) * x + math.cos(th) * y
    au = np.abs(u)

    a = p.thorax_half_width
    base = p.lung_base_y + p.inspiration
    apex = p.lung_apex_y
    yc = base - 0.22
    b = yc - apex
    bd = p.bone_density
    ky = p.kyphosis
    coarse, fine, vessel_profile = _noise_bank()
    off = _offsets(p.patient_seed, 4)
    tex = _lookup(coarse, u, v, off[0])
    tex2 = _lookup(fine, u, v, off[1])

    # -- thorax (inner rib cage) and diaphragm
    r_th = np.sqrt((u / a) ** 2 + ((v - yc) / b) ** 2)
    in_th = _ramp((1.0 - r_th) * a, w(0.012))
    top_l = base - p.dome_height
    top_r = top_l - p.right_dome_offset
    su = au / a
    dome_shape = ((su - 0.42) / 0.58) ** 2
    ydome = np.where(u < 0, top_r + (base + 0.05 - top_r) * dome_shape,
                     top_l + (base + 0.05 - top_l) * dome_shape)
    above = _ramp(ydome - v, w(0.01))

    # -- mediastinum, aortic knob, heart
    ext = p.heart_ctr * a  # half the heart width
    hu = 2.0 * ext * (0.5 - p.heart_right_fraction)  # right border at -fraction * width
    hh = 0.3 + 0.2 * ext  # height of the heart's upper arc above its widest level
    if p.phenotype == "cardiomegaly_female_globular":
        hh = 0.3 + 0.4 * ext
    shear = 0.5 * math.tan(math.radians(p.heart_tilt_deg))  # apex lower than the right border
    hv = top_l - 0.04 - shear * ext  # the apex (left widest point) sits on the left dome
    # a sheared ellipse with a long lower half (hidden by the diaphragm): every row's width is
    # that of the ellipse, so the widest horizontal extent is exactly 2 * ext
    q = (u - hu) / ext
    vv = v - hv - shear * (u - hu)
    semi = np.where(vv < 0, hh, 2.5 * hh)
    heart = _ramp((1.0 - np.sqrt(q**2 + (vv / semi) ** 2)) * min(ext, hh), w(0.01))
    # upper mediastinum: a band that widens and shifts left down to the heart
    f_med = np.clip((v + 0.5) / (hv - 0.5 * hh + 0.5), 0.0, 1.0) ** 1.2
    med_c = 0.01 + f_med * (0.4 * hu)
    med_half = 0.11 + f_med * (0.5 * ext - 0.11)
    upper_med = _ramp(med_half - np.abs(u - med_c), w(0.01)) * _ramp(hv - v, w(0.02))
    knob_r = 0.05 + 0.035 * p.aortic_knob
    knob_c = (0.085 + 0.04 * p.aortic_knob, -0.36 - 0.03 * ky)
    knob = _ramp(knob_r - np.hypot(u - knob_c[0], v - knob_c[1]), w(0.01))
    # ascending aorta / superior vena cava along the right upper border
    asc = _ramp(0.10 + 0.035 * p.aortic_knob - np.hypot(u + 0.02, (v - hv + 0.15) * 0.4),
                w(0.01))
    med = np.maximum.reduce([heart, upper_med, knob, asc])

    lung = in_th * above * (1.0 - med)
    # lungs are thickest centrally and low; thinner near the apex and the chest wall
    depth = np.sqrt(np.sqrt(np.clip(1.0 - r_th**2, 0.0, 1.0)))
    depth = depth * (1.0 - 0.45 * np.exp(-np.clip(v - apex, 0.0, None) / 0.12))

    # -- body outline: chest wall following the rib cage, neck, shoulders and arms
    wall = a * np.sqrt(np.clip(1.0 - ((v - yc) / (b + 0.6)) ** 2, 0.0, 1.0))
    bw = wall + (p.body_half_width - a) + 0.35 * _ramp(-0.55 - v, 0.2)
    shoulder_line = -1.05 + 0.45 * np.clip(au - 0.22, 0.0, None) ** 1.5
    body = _ramp(bw - au, w(0.015)) * _ramp(v - shoulder_line, w(0.015))
    thick = np.sqrt(np.clip(1.0 - (u / (bw + 0.15)) ** 2, 0.0, 1.0))
    A_tot = 1.3 * body * (0.25 + 0.75 * thick)

    # lung air, with parenchymal texture
    A_tot -= 1.1 * lung * depth * (1.0 + 0.04 * tex)

    # trachea and stomach bubble
    trachea = _ramp(0.03 - np.abs(u + 0.01 + 0.02 * (v + 0.3)), w(0.006))
    A_tot -= 0.35 * trachea * _ramp(-0.3 - v, w(0.03)) * body
    if p.gastric_bubble > 0:
        gb_r = 0.05 + 0.05 * p.gastric_bubble
        bub = _ramp(1.0 - np.hypot((u - 0.42 * a) / (1.5 * gb_r), (v - top_l - 0.1) / gb_r),
                    w(0.1))
        A_tot -= 0.45 * bub

    # -- vessels: radial streaks from both hila, and hilar shadows
    hila = ((-0.2 * a / 0.7, -0.08), (0.22 * a / 0.7, -0.14))
    vessels = np.zeros_like(u)
    upper = 1.0 + 0.9 * p.edema_severity * _ramp(-0.1 - v, 0.15)  # cephalisation in edema
    for k, (hx, hy) in enumerate(hila):
        du, dv = u - hx, v - hy
        rr = np.hypot(du, dv)
        ang = np.arctan2(dv, du) + 0.6 * tex * rr + 0.25 * tex2 * rr
        idx = (ang * (_ANGLES / (2.0 * np.pi)) + off[2 + k][0] * 7.0).astype(np.intp) % _ANGLES
        vessels += vessel_profile[idx] * np.exp(-rr / 0.25) * (1.0 - np.exp(-rr / 0.05))
        vessels += 0.9 * np.exp(-(du**2 + dv**2) * (1.0 / (2 * 0.06**2)))
    A_tot += 0.22 * vessels * upper * np.maximum(lung, 0.5 * med)

    # -- bones (all scaled by bone_density)
    bones = np.zeros_like(u)
    spine = _ramp(0.06 - np.abs(u - 0.005), w(0.008))
    disc = 0.5 + 0.5 * np.cos(2.0 * np.pi * (v + 0.02) / 0.115)
    bones += 0.3 * spine * (0.5 + 0.5 * np.clip(1.8 * disc, 0.0, 1.0)) * body
    # posterior ribs: arcs from the spine, rising then falling towards the chest wall; the
    # gaps widen downwards and kyphosis steepens them
    # Each rib is a level set of phi = v - g(s); the continuous rib coordinate rho (rib k at
    # rho = k) inverts the rib spacing, so the nearest rib is found without a loop.
    s = au - 0.04
    n_post = 10
    span = base - apex - 0.12
    curv = 0.55 + 0.5 * (1.0 - np.clip((v - apex) / (base - apex), 0.0, 1.0)) + 0.35 * ky
    phi = v - (-0.22 * s + curv * s * s + 0.25 * s * s * s)
    c = (phi - (apex - 0.02)) / span
    f = (np.sqrt(np.maximum(0.7225 + 0.6 * c, 0.0)) - 0.85) / 0.3  # 0.85 f + 0.15 f^2 = c
    rho = f * (n_post - 1)
    k = np.round(rho)
    dist = np.abs(rho - k) * (span * (0.85 + 0.3 * f) / (n_post - 1))
    half_t = 0.02 + 0.02 * np.clip(s, 0.0, 1.0) + 0.008 * k / (n_post - 1)
    band = _ramp(half_t - dist, w(0.007)) * (0.55 + 0.45 * (dist / half_t) ** 2)
    band *= (k >= 0) & (k <= n_post - 1)
    rib_zone = _ramp((1.08 - r_th) * a, w(0.03)) * _ramp(s, w(0.01))
    bones += 0.26 * band * rib_zone
    # anterior ribs: fainter, from the chest wall down towards the sternum
    rho_a = (v - 0.45 * (a - au) - (apex + 0.1)) / 0.16
    k_a = np.round(rho_a)
    band_a = _ramp(0.028 - np.abs(rho_a - k_a) * 0.16, w(0.008)) * ((k_a >= 0) & (k_a <= 5))
    bones += 0.08 * band_a * _ramp(au - 0.25, w(0.04)) * in_th
    # clavicles
    sc = au - 0.07
    clav_c = -0.58 - 0.1 * ky - 0.3 * sc + 0.12 * sc**2 + 0.02 * np.sin(6.0 * sc)
    clav = _ramp(0.028 - np.abs(v - clav_c), w(0.007)) * _ramp(sc, w(0.015))
    clav *= _ramp(0.75 - sc, w(0.03))
    bones += 0.4 * clav
    # humeral heads and the scapular borders
    rh = np.hypot(au - (p.body_half_width + 0.1), v + 0.7) * (1.0 / 0.15)
    bones += 0.45 * _ramp(1.0 - rh, w(0.04)) * (0.6 + 0.4 * np.sqrt(np.clip(1 - rh**2, 0, 1)))
    scap = _ramp(0.02 - np.abs(au - (a - 0.02) - 0.25 * (v + 0.2)), w(0.01))
    bones += 0.12 * scap * _ramp(-0.05 - v, w(0.05)) * _ramp(v + 0.65, w(0.05))
    A_tot += bd * bones

    # -- breast shadows (convex, densest at the inferior margin)
    if p.breast_size > 0:
        R = 0.25 + 0.1 * p.breast_size
        vb = base - 0.3 + p.breast_drop
        rb = np.hypot((au - 0.62 * a) * 0.85, v - vb)
        grad = np.clip((v - (vb - R)) / (2.0 * R), 0.0, 1.0)
        A_tot += 0.5 * p.breast_size * _ramp(R - rb, w(0.012)) * (0.1 + 0.9 * grad)

    # -- findings
    for side, vol in ((-1.0, p.effusion_right), (1.0, p.effusion_left)):
        if vol <= 0:
            continue
        y_lat = base - vol * (base - apex)
        y_f = y_lat + p.effusion_meniscus * (1.0 - np.clip(su, 0.0, 1.0) ** 2)
        dz = v - y_f
        fluid = _ramp(dz, w(0.03)) * (0.6 + 0.4 * np.clip(dz / 0.25, 0.0, 1.0))
        # fluid displaces lung air (so the dome and the costophrenic angle vanish), plus a
        # little extra density
        region = _ramp(side * u - 0.02, w(0.02)) * in_th
        A_tot += p.effusion_density * fluid * region * (1.1 * lung * depth + 0.12)
    if p.opacity_density > 0:
        ot = _lookup(fine, u, v, _offsets(p.opacity_seed, 1)[0], 0.7 * _BANK_SCALE)
        d2 = ((u - p.opacity_x) ** 2 + (v - p.opacity_y) ** 2) / p.opacity_radius**2
        d2 = d2 * (1.0 + 0.25 * ot)
        blob = np.clip(1.6 * np.exp(-0.8 * d2) - 0.15, 0.0, 1.0)
        blob *= 0.75 + 0.25 * np.clip(ot, -1.0, 1.0)
        A_tot += p.opacity_density * blob * (1.1 * lung * depth + 0.1 * in_th * above)
    if p.edema_severity > 0:
        e = p.edema_severity
        bat = np.zeros_like(u)
        for hx, hy in hila:
            bat += np.exp(-((u - 1.2 * hx) ** 2 / (2 * 0.2**2) + (v - hy) ** 2 / (2 * 0.26**2)))
        haze = 0.45 * np.clip(bat, 0.0, 1.0) + 0.12
        A_tot += e * haze * (1.0 + 0.2 * tex) * lung
        # Kerley B lines: short horizontal lines at the lateral lung bases
        kv = base - 0.06 - 0.045 * np.arange(6)
        lines = _ramp(0.006 - np.abs(v[None] - kv[:, None, None]), w(0.003)).max(axis=0)
        A_tot += 0.25 * e * lines * _ramp(su - 0.72, w(0.02)) * lung
    if p.covid_severity > 0:
        # ground glass: hazy (vessels stay visible), patchy, in both lungs, peripheral
        # (towards the chest wall) and in the lower zones, rising to covid_right / _left
        gt = _lookup(coarse, u, v, _offsets(p.covid_seed, 1)[0], 1.4 * _BANK_SCALE)
        patch = np.clip(0.55 + 0.6 * gt, 0.0, 1.2)
        periph = np.clip((su - 0.3) / 0.45, 0.0, 1.0)
        ggo = np.zeros_like(u)
        for side, extent in ((-1.0, p.covid_right), (1.0, p.covid_left)):
            top = base - extent * (base - apex)
            zone = np.clip((v - top) / 0.3, 0.0, 1.0)
            ggo += _ramp(side * u, w(0.02)) * zone
        A_tot += 0.95 * p.covid_severity * ggo * periph * patch * lung * depth

    # -- film curve, blur, noise
    img = 1.0 - np.exp(-p.exposure * np.clip(A_tot, 0.0, None))
    img = np.clip((img - 0.02) / 0.85, 0.0, 1.0) ** p.gamma
    sigma = p.blur * n / 2.0
    if sigma > 0.3:
        img = ndimage.gaussian_filter(img, sigma, mode="nearest")
    noise = np.random.default_rng(p.noise_seed).standard_normal((n, n), dtype=np.float32)
    img = img + p.noise_sigma * noise
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Datasets: the phantom object (generate / reference / load / cache_key come from Phantom)
# --------------------------------------------------------------------------------------------


class CXRPhantom(Phantom):
    """The chest X-ray phantom (``phantom-cxr``).

    :meth:`generate` rows follow CheXpert's images per patient (a patient's studies are
    consecutive rows and share a split); in a :meth:`reference` population every image is a
    different patient (one study each). The cache key includes :func:`calibration_hash`.
    """

    name = SOURCE
    key = "cxr"
    version = PHANTOM_VERSION
    description = ("procedural chest X-ray phantom, 5 CheXpert findings calibrated to CheXpert "
                   "sex x age x finding counts, plus COVID-19 (embedded, no download)")
    card = "phantom_cxr.md"
    findings = CXR_FINDINGS
    channels = 1
    constraints = {"sex": SEX, "age_group": AGE_GROUPS, "finding": CXR_FINDINGS}
    sample_params = staticmethod(sample_params)
    render = staticmethod(render)
    majority_phenotype = staticmethod(majority_phenotype)

    def attributes(self, params: CXRParams) -> dict[str, object]:
        return {"sex": params.sex, "age": params.age}

    def calibration(self) -> dict[str, object]:
        return {"calibration": calibration_hash()}

    def reference_sampling(self, constraints: Mapping[str, object]) -> dict[str, object]:
        return {**constraints, "images_per_patient": 1}


#: The registered phantom; the module-level functions below are its methods.
PHANTOM = register_phantom(CXRPhantom())
generate = PHANTOM.generate
generate_params = PHANTOM.generate_params
reference = PHANTOM.reference
reference_params = PHANTOM.reference_params
cache_key = PHANTOM.cache_key
load = PHANTOM.load
