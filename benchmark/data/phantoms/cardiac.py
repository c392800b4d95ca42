"""The cardiac MRI phantom: procedural short-axis cine slices with segmentation masks.

Every image is drawn from an explicit generative model whose parameters are all known (the
"oracle truth", :class:`CardiacParams`), so a benchmark can check a generator against ground
truth for any subgroup. The data card ``data_cards/phantom_cardiac.md`` documents every
parameter, the statistics it is calibrated to and what is assumed.

Generative model
----------------
1. **Patients.** Sex, finding (``no_finding`` / ``heart_failure``), BMI and age are drawn
   from :data:`FEMALE_FRACTION`, :data:`HF_PROBABILITY` (per sex), a per-sex and per-finding
   log-normal BMI (:data:`BMI_LOGNORMAL`) and a per-finding truncated normal age
   (:data:`AGE_NORMAL`); constraints on sex, BMI class (WHO) and finding restrict this joint
   distribution exactly (the unconstrained attributes follow the conditional given the
   constrained ones).
2. **Frames.** Each patient has two rows, one per cardiac phase, end-diastole (``-ed``) and
   end-systole (``-es``), of the same mid-ventricular short-axis slice: the same anatomy,
   pose and contrast, contracted at ES, with independent noise.
3. **Heart.** The LV is a (slightly elliptical) ring: blood-pool radius and wall thickness
   depend on sex, age and BMI; the end-systolic cavity area follows the ejection fraction
   (``A_es / A_ed = (1 - EF) ** 0.8``: in-plane area change, the rest of the volume change is
   long-axis shortening) and the myocardial area is conserved (the wall thickens). The RV is
   a crescent wrapped around the septum on the image left whose ES area follows the RV
   ejection fraction. Epicardial fat lines the heart (thickest in the interventricular
   grooves) and grows with BMI; a thin dark pericardium and anterior paracardial fat sit
   outside it.
4. **Body.** Chest wall (muscle under subcutaneous fat that grows with BMI), breasts in
   women, lungs, liver, spine, descending aorta; then a receive-coil bias field (brighter
   anteriorly), a slight blur and Rician noise. Contrast is that of balanced SSFP cine: bright
   blood and fat, dark myocardium and lungs.
5. **Subgroup-specific phenotype** (:attr:`CardiacParams.phenotype`): heart failure in men
   is drawn as *HFrEF* (dilated LV, thin wall, low EF, dilated RV), in women as *HFpEF*
   (concentric hypertrophy: thick wall, small cavity, preserved EF). Two thirds of the
   heart-failure patients are men, so a generator that learns "heart failure = dilated,
   poorly contracting LV" from the majority draws the wrong heart for women with heart
   failure. :func:`majority_phenotype` re-draws a patient with the majority's appearance.

Masks (:func:`render_mask`, the dataset's ``mask`` column): 0 background, 1 LV blood pool
(papillary muscles included, as in ACDC), 2 LV myocardium, 3 RV blood pool.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage, stats

from ...schema import BMI_CLASSES, BMI_EDGES, SEX, bmi_to_class
from ._common import (
    check_choice,
    stable_uniform,
)
from .base import Phantom, register_phantom

CARDIAC_FINDINGS: tuple[str, ...] = ("no_finding", "heart_failure")
FRAMES: tuple[str, ...] = ("ed", "es")  # end-diastole, end-systole

PHENOTYPES: tuple[str, ...] = (
    "typical",  # no_finding
    "hf_reduced_ef_dilated",  # heart failure in men (the majority of heart-failure patients)
    "hf_preserved_ef_concentric",  # heart failure in women
)

#: Mask labels (the ``mask`` column).
MASK_LABELS: dict[int, str] = {0: "background", 1: "lv_blood_pool", 2: "lv_myocardium",
                               3: "rv_blood_pool"}

#: Bump whenever sampling or rendering changes: it is part of every cache key.
PHANTOM_VERSION = "cardiac-1"

SOURCE = "phantom-cardiac"

# -- calibration (sources and assumptions in data_cards/phantom_cardiac.md) -----------------

#: UK Biobank: 54.4 % of participants are female (Petersen et al., JCMR 2016).
FEMALE_FRACTION = 0.544

#: P(heart failure | sex): an enriched, ACDC-like cohort (a design choice, not a population
#: prevalence): about 30 % heart failure overall, two thirds of it in men (as in heart-failure
#: registries, where men predominate through HFrEF).
HF_PROBABILITY: dict[str, float] = {"male": 0.42, "female": 0.19}

#: BMI ~ log-normal(median, sigma of log) per (sex, finding): approximately UK Biobank (mean
#: about 27.4 kg/m^2, men slightly above women, wider in women; roughly a third normal weight,
#: two fifths overweight, a quarter obese); heart failure shifts BMI up, most in women
#: (HFpEF is obesity-related).
BMI_LOGNORMAL: dict[tuple[str, str], tuple[float, float]] = {
    ("male", "no_finding"): (27.3, 0.14),
    ("female", "no_finding"): (26.2, 0.165),
    ("male", "heart_failure"): (28.4, 0.15),
    ("female", "heart_failure"): (28.8, 0.17),
}
BMI_RANGE: tuple[float, float] = (15.0, 55.0)

#: Age ~ normal(mean, sd) truncated to AGE_RANGE, per finding (UK Biobank imaging visit-like
#: ages 45-82; heart failure older).
AGE_NORMAL: dict[str, tuple[float, float]] = {"no_finding": (63.0, 7.5),
                                              "heart_failure": (67.0, 7.5)}
AGE_RANGE: tuple[float, float] = (45.0, 83.0)

#: In-plane exponent: ``A_es / A_ed = (1 - EF) ** AREA_EXPONENT`` for the LV and RV cavities.
AREA_EXPONENT = 0.8

# SSFP intensities on [0, 1] (blood, myocardium and fat are drawn per patient around these).
_AIR, _LUNG, _MUSCLE, _LIVER, _BONE, _PERICARDIUM = 0.0, 0.05, 0.26, 0.40, 0.42, 0.08

_RV_SHAPE = 0.7  # RV crescent width profile: cos(pi/2 * t) ** _RV_SHAPE across the arc


def _profile_integrals() -> tuple[float, float]:
    """Integrals over t in [-1, 1] of the crescent profile g(t) and g(t)**2 (numerically)."""
    t = np.linspace(-1.0, 1.0, 20001)
    g = np.cos(0.5 * np.pi * t) ** _RV_SHAPE
    return float(np.trapezoid(g, t)), float(np.trapezoid(g * g, t))


_G1, _G2 = _profile_integrals()


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardiacParams:
    """Every generating parameter of one phantom frame (the oracle truth).

    Lengths are in centimetres. Anatomical coordinates: ``x`` to the image right (patient's
    left), ``y`` down (posterior), origin at the centre of the field of view before the pose
    (shift, rotation). Angles around the LV centre are counter-clockwise from the image right
    (90 deg = anterior, up). Both frames of a patient share every field except ``frame``,
    ``sample_id`` and ``noise_seed``; ED and ES geometry are both stored.
    """

    # identity
    patient_id: str
    sample_id: str
    frame: str  # "ed" or "es"
    sex: str
    age: float
    bmi: float
    finding: str
    phenotype: str  # one of PHENOTYPES
    # function
    ejection_fraction: float  # LV, volumetric, 0..1
    rv_ejection_fraction: float
    # LV geometry
    lv_x: float
    lv_y: float
    lv_aspect: float  # >= 1, area-preserving ellipticity of the LV
    lv_angle_deg: float
    lv_radius_base: float  # the patient's healthy blood-pool radius at ED (before the finding)
    wall_base: float  # the patient's healthy wall thickness at ED
    lv_radius_ed: float
    wall_ed: float
    lv_radius_es: float
    wall_es: float
    papillary_angle_deg: float  # anterolateral papillary muscle; posteromedial 130 deg further
    endo_harmonics: tuple[float, float, float, float]  # (a2, phase2, a3, phase3): endocardial
    # border radius x (1 + a2 cos 2(t - phase2) + a3 cos 3(t - phase3)), phases in radians
    # RV crescent
    rv_arc_center_deg: float
    rv_arc_half_deg: float
    rv_width_ed: float  # maximal crescent width at ED
    rv_width_es: float
    rv_wall: float
    # fat and body (BMI, sex)
    epicardial_fat: float  # base epicardial fat thickness: x0.6 on the LV free wall, x1.1 on
    # the RV free wall, x2.7 in the interventricular grooves
    paracardial_fat: float  # anterior mediastinal fat outside the pericardium
    subcutaneous_fat: float
    chest_muscle: float
    thorax_half_width: float
    thorax_half_depth: float
    anterior_distance: float  # LV centre to inner anterior chest wall (at least the heart's)
    breast_size: float  # radius of each breast; 0 for men
    # acquisition (shared by both frames)
    fov: float  # field of view side (cm)
    shift_x: float
    shift_y: float
    rotation_deg: float
    blood_intensity: float
    myocardium_intensity: float
    fat_intensity: float
    gain: float
    bias_x: float  # linear receive-coil bias field coefficients (bias_y < 0: anterior bright)
    bias_y: float
    blur: float  # Gaussian blur std (cm)
    noise_sigma: float  # Rician noise std on [0, 1]
    texture_seed: int  # lung vessel / blood-flow texture offsets
    noise_seed: int  # per frame

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def bmi_class(self) -> str:
        return bmi_to_class(self.bmi)  # type: ignore[return-value]

    def geometry(self) -> tuple[float, float, float]:
        """This frame's LV blood-pool radius, wall thickness and RV crescent width (cm)."""
        if self.frame == "ed":
            return self.lv_radius_ed, self.wall_ed, self.rv_width_ed
        return self.lv_radius_es, self.wall_es, self.rv_width_es


def age_decade(age: float) -> str:
    """The age decade of an age in years, e.g. ``"60s"`` for 63 (for prompts and tables)."""
    return f"{int(age) // 10 * 10}s"


def phenotype_of(sex: str, finding: str) -> str:
    """The phenotype a patient of ``sex`` with ``finding`` is drawn with."""
    if finding == "no_finding":
        return "typical"
    return "hf_reduced_ef_dilated" if sex == "male" else "hf_preserved_ef_concentric"


def _bmi_class_bounds(bmi_class: str) -> tuple[float, float]:
    edges = (BMI_RANGE[0], *BMI_EDGES, BMI_RANGE[1])
    i = BMI_CLASSES.index(bmi_class)
    return edges[i], edges[i + 1]


def _bmi_cdf(sex: str, finding: str, value: float) -> float:
    median, sigma = BMI_LOGNORMAL[(sex, finding)]
    return float(stats.norm.cdf((math.log(value) - math.log(median)) / sigma))


def joint_probabilities(*, sex: str | None = None, bmi_class: str | None = None,
                        finding: str | None = None) -> dict[tuple[str, str, str], float]:
    """P(sex, finding, bmi_class) of the model, restricted to the constraints, normalised.

    Keys are ``(sex, finding, bmi_class)``. BMI is truncated to :data:`BMI_RANGE`.
    """
    check_choice("sex", sex, SEX)
    check_choice("bmi_class", bmi_class, BMI_CLASSES)
    check_choice("finding", finding, CARDIAC_FINDINGS)
    out: dict[tuple[str, str, str], float] = {}
    for s in SEX:
        p_s = FEMALE_FRACTION if s == "female" else 1.0 - FEMALE_FRACTION
        for f in CARDIAC_FINDINGS:
            p_f = HF_PROBABILITY[s] if f == "heart_failure" else 1.0 - HF_PROBABILITY[s]
            total = _bmi_cdf(s, f, BMI_RANGE[1]) - _bmi_cdf(s, f, BMI_RANGE[0])
            for c in BMI_CLASSES:
                if (s, f, c) != (sex or s, finding or f, bmi_class or c):
                    continue  # outside the constraints
                lo, hi = _bmi_class_bounds(c)
                out[(s, f, c)] = p_s * p_f * (_bmi_cdf(s, f, hi) - _bmi_cdf(s, f, lo)) / total
    norm = sum(out.values())
    return {k: v / norm for k, v in out.items()}


def _lv_systole(r_ed: float, wall_ed: float, ef: float) -> tuple[float, float]:
    """ES blood-pool radius and wall thickness: cavity area ``(1 - EF) ** 0.8`` of ED's,
    myocardial area conserved."""
    r_es = r_ed * (1.0 - ef) ** (AREA_EXPONENT / 2.0)
    outer_ed = r_ed + wall_ed
    outer_es = math.sqrt(r_es * r_es + outer_ed * outer_ed - r_ed * r_ed)
    return r_es, outer_es - r_es


def _rv_systole(width_ed: float, half_deg: float, outer_ed: float, outer_es: float,
                rv_ef: float) -> float:
    """ES crescent width whose cavity area is ``(1 - RVEF) ** 0.8`` of the ED area.

    The crescent at width ``W`` around an LV of outer radius ``R`` over an arc of half-angle
    ``h`` has area ``R W h G1 + W**2 h G2 / 2`` (``G1``, ``G2``: profile integrals).
    """
    h = math.radians(half_deg)
    area_ed = outer_ed * width_ed * h * _G1 + width_ed ** 2 * h * _G2 / 2.0
    target = area_ed * (1.0 - rv_ef) ** AREA_EXPONENT
    a, b = h * _G2 / 2.0, outer_es * h * _G1
    return (-b + math.sqrt(b * b + 4.0 * a * target)) / (2.0 * a)


def _heart(sex: str, finding: str, r_base: float, wall_base: float, ef: float, rv_ef: float,
           rv_width_base: float, rv_half_deg: float, u_r: float, u_w: float, u_rv: float
           ) -> dict[str, float]:
    """ED and ES geometry of a heart from its healthy baseline and the finding's phenotype.

    ``u_*`` in [0, 1] are the quantiles of the phenotype's factors (so :func:`majority_phenotype`
    can redraw the same patient with another phenotype at the same quantiles).
    """
    phen = phenotype_of(sex, finding)
    r_ed, wall, rv_w, rv_wall = r_base, wall_base, rv_width_base, 0.3
    if phen == "hf_reduced_ef_dilated":
        r_ed = r_base * (1.25 + 0.2 * u_r)
        wall = wall_base * (0.6 + 0.15 * u_w)
        rv_w = rv_width_base * (1.1 + 0.25 * u_rv)
    elif phen == "hf_preserved_ef_concentric":
        r_ed = r_base * (0.78 + 0.12 * u_r)
        wall = wall_base * (1.6 + 0.4 * u_w)
        rv_wall = 0.4
    r_es, wall_es = _lv_systole(r_ed, wall, ef)
    rv_es = _rv_systole(rv_w, rv_half_deg, r_ed + wall, r_es + wall_es, rv_ef)
    return {"lv_radius_ed": r_ed, "wall_ed": wall, "lv_radius_es": r_es, "wall_es": wall_es,
            "rv_width_ed": rv_w, "rv_width_es": rv_es, "rv_wall": rv_wall}


def _ef_draw(phen: str, sex: str, z: float, z_rv: float) -> tuple[float, float]:
    """LV and RV ejection fractions from standard normal draws."""
    if phen == "hf_reduced_ef_dilated":
        return float(np.clip(0.28 + 0.06 * z, 0.12, 0.40)), float(
            np.clip(0.40 + 0.08 * z_rv, 0.20, 0.55))
    if phen == "hf_preserved_ef_concentric":
        return float(np.clip(0.60 + 0.05 * z, 0.50, 0.72)), float(
            np.clip(0.55 + 0.06 * z_rv, 0.40, 0.70))
    # healthy: UK Biobank reference ranges (women 61 +- 5 %, men 58 +- 5 %)
    mean, rv_mean = (0.61, 0.60) if sex == "female" else (0.58, 0.56)
    return float(np.clip(mean + 0.05 * z, 0.50, 0.75)), float(
        np.clip(rv_mean + 0.06 * z_rv, 0.42, 0.75))


def sample_params(
    rng: np.random.Generator,
    n: int,
    *,
    sex: str | None = None,
    bmi_class: str | None = None,
    finding: str | None = None,
    frames: tuple[str, ...] = FRAMES,
    id_prefix: str = "cardiac",
) -> list[CardiacParams]:
    """Draw the parameters of ``n`` rows: patients in order, each with one row per frame.

    Args:
        rng: the only source of randomness (same generator state -> same parameters).
        n: number of rows (images). With both frames, ``ceil(n / 2)`` patients; when ``n`` is
            odd the last patient keeps only its ED frame.
        sex, bmi_class, finding: optional constraints; unconstrained attributes follow the
            model's conditional distribution given the constrained ones
            (:func:`joint_probabilities`).
        frames: the frames of each patient, a non-empty subset of :data:`FRAMES` in order.
        id_prefix: prefix of patient ids (``<prefix>-p000001``) and sample ids
            (``<prefix>-p000001-ed``).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    frames = tuple(frames)
    if not frames or any(f not in FRAMES for f in frames) or len(set(frames)) != len(frames):
        raise ValueError(f"frames must be a non-empty subset of {FRAMES}, got {frames!r}")
    joint = joint_probabilities(sex=sex, bmi_class=bmi_class, finding=finding)
    if n == 0:
        return []
    P = -(-n // len(frames))  # patients
    keys = list(joint)
    cell = rng.choice(len(keys), size=P, p=np.array([joint[k] for k in keys]))
    z = rng.standard_normal((24, P))
    uni = rng.random((17, P))
    out: list[CardiacParams] = []
    width = max(6, len(str(P)))
    # BMI within its class (inverse CDF of the truncated log-normal) and age (truncated
    # normal), vectorised over patients
    sfc = [keys[k] for k in cell]
    log_med = np.log([BMI_LOGNORMAL[(s, f)][0] for s, f, _ in sfc])
    sig = np.array([BMI_LOGNORMAL[(s, f)][1] for s, f, _ in sfc])
    bounds = np.array([_bmi_class_bounds(c) for _, _, c in sfc])
    cdf = stats.norm.cdf((np.log(bounds) - log_med[:, None]) / sig[:, None])
    q = cdf[:, 0] + (cdf[:, 1] - cdf[:, 0]) * uni[0]
    bmi_all = np.exp(log_med + sig * stats.norm.ppf(q))
    bmi_all = np.clip(np.round(bmi_all, 2), bounds[:, 0], bounds[:, 1] - 0.01)  # in class
    age_mu = np.array([AGE_NORMAL[f][0] for _, f, _ in sfc])
    age_sd = np.array([AGE_NORMAL[f][1] for _, f, _ in sfc])
    age_all = np.floor(stats.truncnorm.ppf(uni[1], (AGE_RANGE[0] - age_mu) / age_sd,
                                           (AGE_RANGE[1] - age_mu) / age_sd, loc=age_mu,
                                           scale=age_sd))
    age_all = np.minimum(age_all, AGE_RANGE[1] - 1)
    for i in range(P):
        s, f, c = sfc[i]
        male = s == "male"
        phen = phenotype_of(s, f)
        bmi, age = float(bmi_all[i]), float(age_all[i])
        db, da = bmi - 27.0, age - 60.0
        # healthy baseline heart (men larger; smaller with age, larger with body size)
        r_base = (2.55 if male else 2.30) + 0.2 * z[0, i] - 0.008 * da + 0.012 * db
        r_base = float(np.clip(r_base, 1.8, 3.1))
        w_base = (0.95 if male else 0.80) + 0.07 * z[1, i] + 0.003 * da + 0.006 * db
        w_base = float(np.clip(w_base, 0.6, 1.15))
        rv_base = float(np.clip((2.2 if male else 1.95) + 0.22 * z[2, i], 1.4, 2.8))
        rv_half = float(75.0 + 6.0 * z[3, i])
        ef, rv_ef = _ef_draw(phen, s, float(z[4, i]), float(z[5, i]))
        heart = _heart(s, f, r_base, w_base, ef, rv_ef, rv_base, rv_half,
                       float(uni[2, i]), float(uni[3, i]), float(uni[4, i]))
        epi = float(np.clip(0.12 + 0.04 * (bmi - 22.0) + 0.004 * da + (0.04 if male else 0.0)
                            + 0.04 * z[6, i], 0.03, 1.0))
        para = float(np.clip(0.1 + 0.06 * (bmi - 22.0) + 0.1 * z[7, i], 0.0, 1.5))
        subq = float(np.clip((0.35 + 0.18 * (bmi - 20.0)) if male else
                             (0.6 + 0.25 * (bmi - 20.0)) + 0.25 * z[8, i], 0.2, 7.0))
        muscle = float(np.clip((1.6 if male else 1.2) + 0.2 * z[9, i], 0.7, 2.3))
        thw = float((14.0 if male else 12.8) + 0.7 * z[10, i] + 0.08 * db)
        thd = float((9.5 if male else 8.6) + 0.5 * z[11, i] + 0.05 * db)
        breast = 0.0 if male else float(np.clip(2.5 + 0.35 * (bmi - 22.0) + 0.8 * z[12, i],
                                                1.0, 9.0))
        pid = f"{id_prefix}-p{i + 1:0{width}d}"
        common = dict(
            patient_id=pid, sex=s, age=age, bmi=bmi, finding=f, phenotype=phen,
            ejection_fraction=ef, rv_ejection_fraction=rv_ef,
            lv_x=float(1.2 + 0.4 * z[13, i]), lv_y=float(0.3 + 0.4 * z[14, i]),
            lv_aspect=float(1.0 + 0.08 * uni[5, i]), lv_angle_deg=float(180.0 * uni[6, i]),
            lv_radius_base=r_base, wall_base=w_base,
            papillary_angle_deg=float(35.0 + 15.0 * z[15, i]),
            endo_harmonics=(float(0.02 + 0.03 * uni[13, i]), float(np.pi * uni[14, i]),
                            float(0.01 + 0.02 * uni[15, i]), float(2.0 * np.pi * uni[16, i])),
            rv_arc_center_deg=float(168.0 + 8.0 * z[16, i]), rv_arc_half_deg=rv_half,
            epicardial_fat=epi, paracardial_fat=para, subcutaneous_fat=subq,
            chest_muscle=muscle, thorax_half_width=thw, thorax_half_depth=thd,
            anterior_distance=float(6.2 + 0.5 * z[17, i]), breast_size=breast,
            fov=float(20.0 + 3.0 * uni[7, i]),
            shift_x=float(0.6 * z[18, i]), shift_y=float(0.6 * z[19, i]),
            rotation_deg=float(6.0 * z[20, i]),
            blood_intensity=float(0.85 + 0.03 * z[21, i]),
            myocardium_intensity=float(0.27 + 0.02 * z[22, i]),
            fat_intensity=float(0.70 + 0.03 * z[23, i]),
            gain=float(0.9 + 0.2 * uni[8, i]),
            bias_x=float(0.08 * (2.0 * uni[9, i] - 1.0)),
            bias_y=float(-0.05 - 0.15 * uni[10, i]),
            blur=float(0.03 + 0.05 * uni[11, i]),
            noise_sigma=float(0.015 + 0.02 * uni[12, i]),
            texture_seed=int(rng.integers(0, 2**31 - 1)),
            **heart,
        )
        for frame in frames:
            if len(out) == n:
                break
            out.append(CardiacParams(sample_id=f"{pid}-{frame}", frame=frame,
                                     noise_seed=int(rng.integers(0, 2**31 - 1)),
                                     **common))
    return out


def majority_phenotype(params: CardiacParams) -> CardiacParams:
    """The same patient re-drawn with the majority subgroup's appearance of its finding.

    Two thirds of the heart-failure patients are men, drawn as HFrEF, so a woman's
    ``hf_preserved_ef_concentric`` heart becomes ``hf_reduced_ef_dilated``: her healthy
    baseline heart, body, pose and contrast are kept; the phenotype's cavity and wall factors
    and the ejection fractions are mapped to the HFrEF ranges at the same quantiles, and the RV
    dilation quantile comes from :func:`~._common.stable_uniform` of the patient id, so both
    frames of a patient stay consistent. Other parameters are returned unchanged.
    """
    p = params
    if p.phenotype != "hf_preserved_ef_concentric":
        return p
    u_r = min(max((p.lv_radius_ed / p.lv_radius_base - 0.78) / 0.12, 0.0), 1.0)
    u_w = min(max((p.wall_ed / p.wall_base - 1.6) / 0.4, 0.0), 1.0)
    z = (p.ejection_fraction - 0.60) / 0.05
    z_rv = (p.rv_ejection_fraction - 0.55) / 0.06
    ef, rv_ef = _ef_draw("hf_reduced_ef_dilated", "male", z, z_rv)
    heart = _heart("male", "heart_failure", p.lv_radius_base, p.wall_base, ef, rv_ef,
                   p.rv_width_ed, p.rv_arc_half_deg, u_r, u_w,
                   stable_uniform("cardiac-majority-rv", p.patient_id))
    return replace(p, phenotype="hf_reduced_ef_dilated", ejection_fraction=ef,
                   rv_ejection_fraction=rv_ef, **heart)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    u, v = np.meshgrid(c, c)
    u.setflags(write=False)
    v.setflags(write=False)
    return u, v


_BANK = 128


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed periodic smooth noise field (unit variance; a fixed seed)."""
    r = np.random.default_rng(20240615)
    f = ndimage.gaussian_filter(r.standard_normal((_BANK, _BANK)), 1.5, mode="wrap")
    return (f - f.mean()) / f.std()


def _texture(X: np.ndarray, Y: np.ndarray, seed: int, scale: float) -> np.ndarray:
    """The noise bank at anatomical coordinates (cm) times ``scale`` plus a seeded offset."""
    off = np.random.default_rng(seed).uniform(0.0, _BANK, 2)
    coords = np.stack([Y * scale + off[1], X * scale + off[0]])
    return ndimage.map_coordinates(_noise_bank(), coords, order=1, mode="grid-wrap")


def _ramp(d: np.ndarray, w: float) -> np.ndarray:
    """Soft step of a signed distance: 0 for d <= -w, 1 for d >= w (anti-aliased edges)."""
    return np.clip(d * (0.5 / w) + 0.5, 0.0, 1.0)


def _ellipse_distance(X, Y, cx, cy, a, b):
    """Approximate signed distance (positive inside) to an axis-aligned ellipse, along rays."""
    dx, dy = X - cx, Y - cy
    r = np.sqrt(dx * dx + dy * dy) + 1e-9
    rho = np.sqrt((dx / a) ** 2 + (dy / b) ** 2) + 1e-9
    return r / rho - r


def _coords(p: CardiacParams, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Anatomical coordinates (cm) of every pixel centre and half a pixel (cm)."""
    u, v = _grid(n)
    half = p.fov / 2.0
    x, y = u * half - p.shift_x, v * half - p.shift_y
    a = math.radians(p.rotation_deg)
    X = math.cos(a) * x + math.sin(a) * y
    Y = -math.sin(a) * x + math.cos(a) * y
    return X, Y, half / n


def _heart_fields(p: CardiacParams, X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """Polar fields around the LV centre: ``rho`` (cm, ellipticity undone), signed angle from
    the RV arc centre ``dphi`` (rad), RV crescent width ``w`` and wall taper."""
    dx, dy = X - p.lv_x, Y - p.lv_y
    a = math.radians(p.lv_angle_deg)
    xr = math.cos(a) * dx + math.sin(a) * dy
    yr = -math.sin(a) * dx + math.cos(a) * dy
    k = math.sqrt(p.lv_aspect)
    rho = np.sqrt((xr / k) ** 2 + (yr * k) ** 2)
    phi = np.arctan2(-dy, dx)  # counter-clockwise, anterior (up) = +90 deg
    dphi = (phi - math.radians(p.rv_arc_center_deg) + np.pi) % (2.0 * np.pi) - np.pi
    half = math.radians(p.rv_arc_half_deg)
    t = np.abs(dphi) / half
    g = np.cos(0.5 * np.pi * np.minimum(t, 1.0)) ** _RV_SHAPE
    taper = np.clip((half + math.radians(10.0) - np.abs(dphi)) / math.radians(10.0), 0.0, 1.0)
    return {"rho": rho, "dphi": dphi, "g": g, "taper": taper, "t": t, "phi": phi}


_ANGLES = np.linspace(-np.pi, np.pi, 361)[:-1]  # 1-degree samples of the polar profiles


def _interp_angle(phi: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Periodic profiles ``(k, 360)`` sampled on :data:`_ANGLES`, linearly interpolated at the
    angles ``phi``: shape ``(k, *phi.shape)`` (by hand: ``np.interp`` takes one profile)."""
    pos = (phi + np.pi) * (len(_ANGLES) / (2.0 * np.pi))
    i0 = np.floor(pos)
    frac = pos - i0
    i0 = i0.astype(np.intp) % len(_ANGLES)
    i1 = (i0 + 1) % len(_ANGLES)
    return profiles[:, i0] * (1.0 - frac) + profiles[:, i1] * frac


def _fat_profiles(p: CardiacParams, R: float, rv_w: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outer radii (around the LV centre, per :data:`_ANGLES`) of the epicardial fat, the
    pericardium and the paracardial fat."""
    dphi = (_ANGLES - math.radians(p.rv_arc_center_deg) + np.pi) % (2.0 * np.pi) - np.pi
    half = math.radians(p.rv_arc_half_deg)
    t = np.abs(dphi) / half
    g = np.cos(0.5 * np.pi * np.minimum(t, 1.0)) ** _RV_SHAPE
    taper = np.clip((half + math.radians(10.0) - np.abs(dphi)) / math.radians(10.0), 0.0, 1.0)
    outer = R + rv_w * g + p.rv_wall * taper
    groove = np.exp(-((np.abs(dphi) - half) / 0.3) ** 2)
    fat = p.epicardial_fat * (0.6 + 0.5 * taper + 1.6 * groove)
    f_out = ndimage.gaussian_filter1d(outer + fat, 12.0, mode="wrap")  # 12 degrees
    f_out = np.maximum(f_out, outer + 0.5 * fat)
    peri_out = f_out + 0.12
    anterior = np.clip(np.sin(_ANGLES), 0.0, 1.0) ** 1.5
    para_out = ndimage.gaussian_filter1d(peri_out + p.paracardial_fat * (0.25 + anterior),
                                         10.0, mode="wrap")
    return f_out, peri_out, np.maximum(para_out, peri_out)


def _labels(p: CardiacParams, X: np.ndarray, Y: np.ndarray, aa: float,
            fields: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Soft (0..1) maps of the heart's structures for this frame."""
    h = fields or _heart_fields(p, X, Y)
    r, wall, rv_w = p.geometry()
    R = r + wall
    rho = h["rho"]
    w = rv_w * h["g"]
    rv_wall = p.rv_wall * h["taper"]
    a2, ph2, a3, ph3 = p.endo_harmonics
    phi = h["phi"]
    lv_blood = _ramp(r * (1.0 + a2 * np.cos(2.0 * (phi - ph2)) + a3 * np.cos(3.0 * (phi - ph3)))
                     - rho, aa)
    lv_outer = _ramp(R - rho, aa)
    rv_blood = _ramp(rho - R, aa) * _ramp(R + w - rho, aa) * (w > 0.25 * aa)
    outer = R + w + rv_wall  # outer surface of the heart
    heart = _ramp(outer - rho, aa)
    # fat and pericardium: their outer surfaces, as functions of the angle, are smoothed so
    # that fat fills the notches where the RV meets the septum (the interventricular grooves)
    f_out, peri_out, para_out = _interp_angle(h["phi"], np.stack(_fat_profiles(p, R, rv_w)))
    epi = _ramp(f_out - rho, aa)
    pericardium = _ramp(peri_out - rho, aa)
    para = _ramp(para_out - rho, aa)
    return {"lv_blood": lv_blood, "lv_outer": lv_outer, "rv_blood": rv_blood, "heart": heart,
            "epicardial": epi, "pericardium": pericardium, "paracardial": para}


def _papillary(p: CardiacParams, X: np.ndarray, Y: np.ndarray, aa: float) -> np.ndarray:
    r, _, _ = p.geometry()
    size = 0.28 if p.frame == "ed" else 0.36
    out = np.zeros_like(X)
    for ang in (p.papillary_angle_deg, p.papillary_angle_deg - 130.0):
        t = math.radians(ang)
        cx = p.lv_x + (r - size * 1.1) * math.cos(t)
        cy = p.lv_y - (r - size * 1.1) * math.sin(t)
        d = size - np.sqrt((X - cx) ** 2 + (Y - cy) ** 2)
        out = np.maximum(out, _ramp(d, aa))
    return out


def _body(p: CardiacParams, X: np.ndarray, Y: np.ndarray, aa: float) -> dict[str, np.ndarray]:
    """Soft maps of the chest: body outline, inner muscle surface, thoracic cavity, organs."""
    r_ed, wall_ed, rv_ed = p.lv_radius_ed, p.wall_ed, p.rv_width_ed
    heart_extent = r_ed + wall_ed + 0.8 * rv_ed + 1.5 * p.epicardial_fat + p.paracardial_fat
    ant = max(p.anterior_distance, heart_extent + 0.6)
    cy = p.lv_y - ant + p.thorax_half_depth  # thorax centre
    d = _ellipse_distance(X, Y, 0.0, cy, p.thorax_half_width, p.thorax_half_depth)
    thorax = _ramp(d, aa)
    inner = _ramp(d + p.chest_muscle, aa)
    body = _ramp(d + p.chest_muscle + p.subcutaneous_fat, aa)
    if p.breast_size > 0:
        front = cy - p.thorax_half_depth - p.chest_muscle - 0.5 * p.subcutaneous_fat
        s = p.breast_size
        for side in (-1.0, 1.0):  # supine: flattened mounds merging with the chest wall
            bx, by = side * (0.45 * p.thorax_half_width + 0.3 * s), front + 0.45 * s
            db = _ellipse_distance(X, Y, bx, by, 1.6 * s, 0.9 * s)
            body = np.maximum(body, _ramp(db, aa))
    back = cy + p.thorax_half_depth
    spine_y = back - 3.2
    liver = _ramp(_ellipse_distance(X, Y, -6.0, cy + 0.45 * p.thorax_half_depth, 6.5, 5.0),
                  aa) * thorax
    paraspinal = _ramp(_ellipse_distance(X, Y, 0.0, back - 1.5, 4.5, 3.0), aa) * thorax
    vertebra = _ramp(1.9 - np.sqrt((X - 0.2) ** 2 + (Y - spine_y) ** 2), aa)
    aorta = _ramp(1.1 - np.sqrt((X - 2.6) ** 2 + (Y - (spine_y - 2.4)) ** 2), aa)
    return {"body": body, "inner": inner, "thorax": thorax, "liver": liver,
            "paraspinal": paraspinal, "vertebra": vertebra, "aorta": aorta}


@functools.lru_cache(maxsize=4)
def _scene(p: CardiacParams, n: int) -> dict[str, object]:
    """Every soft map of a frame at ``n`` pixels, shared by :func:`render` and
    :func:`region_masks` (a dataset row renders both; arrays are read-only)."""
    X, Y, aa = _coords(p, n)
    fields = _heart_fields(p, X, Y)
    maps = {**_body(p, X, Y, aa), **_labels(p, X, Y, aa, fields)}
    maps["papillary"] = _papillary(p, X, Y, aa)
    for m in maps.values():
        m.setflags(write=False)
    return {"X": X, "Y": Y, "aa": aa, **maps}


def render(params: CardiacParams, image_size: int = 64) -> np.ndarray:
    """Render one frame as a ``uint8`` array of shape ``(image_size, image_size)``.

    Geometry is in centimetres over the field of view, so every resolution shows the same
    anatomy; edges are anti-aliased over a pixel. Deterministic: the same params and size
    give the same pixels. Structures are painted back to front with SSFP intensities, then a
    linear coil bias field, a Gaussian blur and Rician noise are applied.
    """
    n = int(image_size)
    if n < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    p = params
    b = h = _scene(p, n)
    X, Y, aa = b["X"], b["Y"], b["aa"]
    tex = _texture(X, Y, p.texture_seed, 3.0)
    fat, blood, myo = p.fat_intensity, p.blood_intensity, p.myocardium_intensity

    def paint(img: np.ndarray, value, weight: np.ndarray) -> np.ndarray:
        return img + (value - img) * weight

    img = np.full(X.shape, _AIR)
    img = paint(img, fat, b["body"])
    img = paint(img, _MUSCLE, b["inner"])
    lung = _LUNG + 0.06 * np.clip(tex - 1.2, 0.0, None)  # faint vessels
    img = paint(img, lung, b["thorax"])
    img = paint(img, _LIVER + 0.015 * tex, b["liver"])
    img = paint(img, _MUSCLE, b["paraspinal"])
    img = paint(img, _BONE, b["vertebra"])
    img = paint(img, blood * 0.9, b["aorta"])
    thorax = b["thorax"]
    img = paint(img, fat * 0.97, h["paracardial"] * thorax)
    img = paint(img, _PERICARDIUM, h["pericardium"] * thorax)
    img = paint(img, fat, h["epicardial"] * thorax)
    img = paint(img, myo, h["heart"])
    img = paint(img, blood * 0.97 + 0.02 * tex, h["rv_blood"])
    img = paint(img, myo + 0.01 * tex, h["lv_outer"])
    img = paint(img, blood + 0.02 * tex, h["lv_blood"])
    img = paint(img, myo * 1.1, h["papillary"] * h["lv_blood"])

    u, v = _grid(n)
    img = img * p.gain * (1.0 + p.bias_x * u + p.bias_y * v)
    sigma_px = p.blur / (2.0 * aa)
    if sigma_px >= 0.3:
        img = ndimage.gaussian_filter(img, sigma_px, mode="nearest", truncate=3.0)
    noise = np.random.default_rng(p.noise_seed).standard_normal((2, n, n))
    img = np.sqrt((img + p.noise_sigma * noise[0]) ** 2 + (p.noise_sigma * noise[1]) ** 2)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def region_masks(params: CardiacParams, image_size: int = 64) -> dict[str, np.ndarray]:
    """Boolean oracle masks (pixels) of this frame's regions.

    ``lv_blood_pool``, ``lv_myocardium``, ``rv_blood_pool`` (the labels of
    :func:`render_mask`), ``heart`` (blood pools, myocardium and RV free wall),
    ``epicardial_fat`` (between the heart and the pericardium), ``subcutaneous_fat`` (body
    outline, breasts included, outside the chest muscle), ``lungs`` (thoracic cavity outside the
    mediastinum and organs) and ``body``.
    """
    n = int(image_size)
    if n < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    b = h = _scene(params, n)
    lv_blood = h["lv_blood"] > 0.5
    lv_outer = h["lv_outer"] > 0.5
    heart = (h["heart"] > 0.5) | lv_outer
    organs = (b["liver"] > 0.5) | (b["paraspinal"] > 0.5) | (b["vertebra"] > 0.5) | (
        b["aorta"] > 0.5)
    return {
        "lv_blood_pool": lv_blood,
        "lv_myocardium": lv_outer & ~lv_blood,
        "rv_blood_pool": (h["rv_blood"] > 0.5) & ~lv_outer,
        "heart": heart,
        "epicardial_fat": (h["epicardial"] > 0.5) & ~heart,
        "subcutaneous_fat": (b["body"] > 0.5) & ~(b["inner"] > 0.5),
        "lungs": (b["thorax"] > 0.5) & ~(h["paracardial"] > 0.5) & ~organs,
        "body": b["body"] > 0.5,
    }


def render_mask(params: CardiacParams, image_size: int = 64) -> np.ndarray:
    """The segmentation mask of a frame: ``uint8`` labels of :data:`MASK_LABELS` (0 background,
    1 LV blood pool with papillary muscles, 2 LV myocardium, 3 RV blood pool)."""
    m = region_masks(params, image_size)
    out = np.zeros(m["body"].shape, np.uint8)
    out[m["rv_blood_pool"]] = 3
    out[m["lv_myocardium"]] = 2
    out[m["lv_blood_pool"]] = 1
    return out


def ejection_fraction_from_areas(area_ed: float, area_es: float) -> float:
    """Invert the model's in-plane law: ``EF = 1 - (A_es / A_ed) ** (1 / 0.8)``."""
    if area_ed <= 0:
        raise ValueError(f"area_ed must be > 0, got {area_ed}")
    return 1.0 - (area_es / area_ed) ** (1.0 / AREA_EXPONENT)


# --------------------------------------------------------------------------------------------
# Datasets: the phantom object (generate / reference / load / cache_key come from Phantom)
# --------------------------------------------------------------------------------------------


class CardiacPhantom(Phantom):
    """The cardiac MRI phantom (``phantom-cardiac``): ED and ES frames of each patient.

    :meth:`generate` rows are both frames of each patient, consecutive (so they share a
    split); ``mask`` holds :func:`render_mask`. A :meth:`reference` with ``frame=None`` gives
    both frames of ``ceil(n / 2)`` patients (like :meth:`generate`); ``"ed"`` or ``"es"`` one
    frame of each of ``n`` patients.
    """

    name = SOURCE
    key = "cardiac"
    version = PHANTOM_VERSION
    description = ("procedural short-axis cine cardiac MRI phantom (ED and ES frames with "
                   "LV / myocardium / RV masks), no_finding / heart_failure, sex and BMI "
                   "effects (embedded, no download)")
    card = "phantom_cardiac.md"
    findings = CARDIAC_FINDINGS
    channels = 1
    constraints = {"sex": SEX, "bmi_class": BMI_CLASSES, "finding": CARDIAC_FINDINGS,
                   "frame": FRAMES}
    generate_stream = "cardiac-generate"
    reference_stream = "cardiac-reference"
    sample_params = staticmethod(sample_params)
    render = staticmethod(render)
    render_mask = staticmethod(render_mask)
    majority_phenotype = staticmethod(majority_phenotype)

    def attributes(self, params: CardiacParams) -> dict[str, object]:
        return {"sex": params.sex, "age": params.age, "bmi": params.bmi}

    def reference_sampling(self, constraints: Mapping[str, object]) -> dict[str, object]:
        out = dict(constraints)
        frame = out.pop("frame")
        out["frames"] = FRAMES if frame is None else (frame,)
        return out


#: The registered phantom; the module-level functions below are its methods.
PHANTOM = register_phantom(CardiacPhantom())
generate = PHANTOM.generate
generate_params = PHANTOM.generate_params
reference = PHANTOM.reference
reference_params = PHANTOM.reference_params
cache_key = PHANTOM.cache_key
load = PHANTOM.load
