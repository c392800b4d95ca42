"""The brain MRI phantom: procedural T1-weighted axial slices with OASIS-1-like proportions.

Every image is drawn from an explicit generative model whose parameters are all known (the
"oracle truth", :class:`BrainParams`), so a benchmark can check a generator against ground
truth for any subgroup. The data card ``data_cards/phantom_brain.md`` documents every
parameter and its effect.

Generative model
----------------
1. **Patients** (one image each). The age is drawn from a piecewise-uniform approximation of
   the OASIS-1 cross-sectional age distribution (416 subjects, 18-96, bimodal: many young
   adults and many older adults), :data:`OASIS_AGE_BINS`; the finding ``dementia`` (CDR > 0)
   has the per-bin probability of that table (100 of 416 subjects, all aged 60+), with CDR
   0.5 / 1 / 2 in proportion 70 / 28 / 2; sex is female with probability 256/416 (about
   61 %), independently of age and finding.
2. **Anatomy.** Head size and shape depend on sex (men larger on average) and vary per
   patient; age widens sulci, thins the cortex, widens the subarachnoid space and enlarges the
   ventricles (a continuous, accelerating effect); dementia adds cortical atrophy beyond age
   and hippocampal atrophy with enlarged temporal horns / choroid fissures.
3. **Subgroup-specific phenotype** (:attr:`BrainParams.phenotype`): in patients under 75,
   dementia is *hippocampal-sparing* (posterior, parieto-occipital cortical atrophy, only
   mild hippocampal loss); at 75 and over it is *limbic-predominant* (marked hippocampal
   atrophy and temporal-horn enlargement, little posterior predominance). This follows the
   neuropathological AD subtypes (Murray et al., Lancet Neurol 2011; Whitwell et al.,
   Neurology 2012): hippocampal-sparing AD is younger at onset, limbic-predominant older.
4. **Rendering** (:func:`render`): soft-edged shapes in head-normalised coordinates (any
   resolution): scalp fat (bright), skull (dark cortical tables around a marrow band),
   subarachnoid CSF (dark), cortical grey matter (intermediate) folded by sulci (dark clefts
   from the surface) and the interhemispheric fissure, white matter (bright), deep grey
   nuclei, lateral ventricles (dark butterfly: frontal horns and atria), third ventricle,
   hippocampi (grey) with their CSF pocket (temporal horn, choroid fissure); then a smooth
   bias field, slight blur and Rician noise.

The slice is a stylised composite at the level of the frontal horns and atria of the lateral
ventricles that also shows both hippocampi (as on a slice angled along the temporal lobes);
radiological orientation, anterior at the top.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage

from ...schema import AGE_BAND_EDGE, AGE_BANDS, SEX, age_to_band, age_to_group
from ._common import (
    check_choice,
)
from .base import Phantom, register_phantom

BRAIN_FINDINGS: tuple[str, ...] = ("no_finding", "dementia")

#: The two age bands of the subgroup-specific phenotype are the schema's
#: (:data:`benchmark.schema.AGE_BANDS`, split at :data:`benchmark.schema.AGE_BAND_EDGE`).
PHENOTYPE_AGE = AGE_BAND_EDGE

PHENOTYPES: tuple[str, ...] = (
    "typical",  # no dementia
    "dementia_hippocampal_sparing",  # dementia, age < 75
    "dementia_limbic_predominant",  # dementia, age >= 75
)

#: Bump whenever sampling or rendering changes: it is part of every cache key.
PHANTOM_VERSION = "brain-1"

SOURCE = "phantom-brain"

#: Approximation of OASIS-1 cross-sectional: (age_lo, age_hi_exclusive, subjects, demented).
#: Totals are exact (416 subjects, 100 with CDR > 0, all aged 60+); the split into bins is an
#: approximation of the published bimodal age histogram (documented in the data card).
OASIS_AGE_BINS: tuple[tuple[int, int, int, int], ...] = (
    (18, 30, 148, 0),
    (30, 40, 22, 0),
    (40, 50, 24, 0),
    (50, 60, 24, 0),
    (60, 70, 56, 20),
    (70, 75, 44, 25),
    (75, 80, 44, 25),
    (80, 97, 54, 30),
)
OASIS_SUBJECTS = 416
OASIS_DEMENTED = 100
#: Female subjects (approximate: OASIS-1 is about 61 % female).
OASIS_FEMALE = 256
#: CDR among demented subjects: 0.5, 1, 2 in proportion 70 / 28 / 2.
CDR_LEVELS: tuple[float, ...] = (0.5, 1.0, 2.0)
CDR_COUNTS: tuple[int, ...] = (70, 28, 2)
_CDR_SEVERITY = {0.0: 0.0, 0.5: 0.6, 1.0: 1.0, 2.0: 1.4}

# T1 intensities on a [0, 1] scale.
_AIR, _SCALP, _BONE, _MARROW, _CSF, _GM, _DEEP = 0.0, 0.86, 0.06, 0.50, 0.08, 0.44, 0.52


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrainParams:
    """Every generating parameter of one phantom slice (the oracle truth).

    Image coordinates ``u`` (left to right) and ``v`` (top = anterior to bottom) run from -1 to
    1. Anatomy is in head-normalised coordinates ``X = u' / head_half_width``,
    ``Y = v' / head_half_length`` (``u', v'`` after undoing the pose), where the scalp surface
    is the unit circle; lengths below are in these units unless stated.
    """

    # identity
    patient_id: str
    sample_id: str
    sex: str
    age: float
    age_group: str
    age_band: str  # "<75" or ">=75"
    finding: str
    cdr: float  # clinical dementia rating: 0 for no_finding, else 0.5, 1 or 2
    phenotype: str  # one of PHENOTYPES
    # head
    head_half_width: float  # lateral semi-axis of the scalp outline (image units)
    head_half_length: float  # anterior-posterior semi-axis (image units)
    scalp_thickness: float
    skull_thickness: float
    # brain (age and dementia effects)
    cortical_atrophy: float  # global: widens sulci and subarachnoid CSF, thins the cortex
    posterior_atrophy: float  # extra parieto-occipital atrophy (0 = none)
    hippocampal_atrophy: float  # fraction of hippocampal width lost (0..0.7)
    sulcal_width: float
    csf_gap: float  # subarachnoid CSF between inner skull table and brain surface
    cortex_thickness: float
    ventricle_scale: float  # lateral ventricle width relative to a young adult (1)
    third_ventricle_width: float
    temporal_horn: float  # CSF margin around the hippocampus (temporal horn, choroid fissure)
    wm_intensity: float  # T1 white matter signal (falls slightly with age)
    gyral_seed: int  # seeds the sulcal pattern (positions, depths)
    # acquisition
    shift_x: float
    shift_y: float
    rotation_deg: float
    brightness: float
    gamma: float
    bias_x: float  # linear bias field coefficients
    bias_y: float
    blur: float  # Gaussian blur std (image units)
    noise_sigma: float  # Rician noise std on the [0, 1] scale
    noise_seed: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def age_band_of(age: float) -> str:
    """``"<75"`` or ``">=75"``: the band that selects the dementia phenotype
    (:func:`benchmark.schema.age_to_band`)."""
    return age_to_band(age)  # type: ignore[return-value]


def expected_proportions() -> dict[str, float]:
    """The population proportions the sampler targets (from :data:`OASIS_AGE_BINS`)."""
    bins = np.array(OASIS_AGE_BINS, float)
    n = bins[:, 2].sum()
    old = bins[:, 0] >= PHENOTYPE_AGE
    return {
        "dementia": float(bins[:, 3].sum() / n),
        "female": OASIS_FEMALE / OASIS_SUBJECTS,
        "age_60_plus": float(bins[bins[:, 0] >= 60, 2].sum() / n),
        "age_75_plus": float(bins[old, 2].sum() / n),
        "dementia_given_75_plus": float(bins[old, 3].sum() / bins[old, 2].sum()),
        "dementia_given_60_to_74": float(
            bins[(bins[:, 0] >= 60) & ~old, 3].sum() / bins[(bins[:, 0] >= 60) & ~old, 2].sum()
        ),
    }


def sample_params(
    rng: np.random.Generator,
    n: int,
    *,
    sex: str | None = None,
    age_band: str | None = None,
    finding: str | None = None,
    id_prefix: str = "brain",
) -> list[BrainParams]:
    """Draw the parameters of ``n`` patients (one image each).

    Args:
        rng: the only source of randomness (same generator state -> same parameters).
        n: number of images (= patients).
        sex, age_band, finding: optional constraints; unconstrained attributes follow the
            calibrated conditional distribution given the constrained ones.
        id_prefix: prefix of patient ids (``<prefix>-p000001``) and sample ids
            (``<prefix>-p000001-s1``).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    check_choice("sex", sex, SEX)
    check_choice("age_band", age_band, AGE_BANDS)
    check_choice("finding", finding, BRAIN_FINDINGS)
    if n == 0:
        return []

    bins = np.array(OASIS_AGE_BINS, float)
    lo, hi, count, dem = bins.T
    weight = {None: count, "dementia": dem, "no_finding": count - dem}[finding].copy()
    if age_band == "<75":
        weight[lo >= PHENOTYPE_AGE] = 0.0
    elif age_band == ">=75":
        weight[lo < PHENOTYPE_AGE] = 0.0
    if weight.sum() <= 0:  # pragma: no cover - every band has both findings
        raise ValueError(f"no calibration subjects with age_band={age_band!r}, "
                         f"finding={finding!r}")
    b = rng.choice(len(bins), size=n, p=weight / weight.sum())
    age = rng.integers(lo[b].astype(int), hi[b].astype(int)).astype(float)
    u_find = rng.random(n)
    if finding is None:
        demented = u_find < dem[b] / count[b]
    else:
        demented = np.full(n, finding == "dementia")
    u_sex = rng.random(n)
    if sex is None:
        male = u_sex >= OASIS_FEMALE / OASIS_SUBJECTS
    else:
        male = np.full(n, sex == "male")
    cdr = np.where(
        demented,
        np.array(CDR_LEVELS)[rng.choice(3, size=n, p=np.array(CDR_COUNTS) / sum(CDR_COUNTS))],
        0.0,
    )
    sev = np.array([_CDR_SEVERITY[float(c)] for c in cdr])
    old = age >= PHENOTYPE_AGE
    sparing = demented & ~old
    limbic = demented & old

    z = rng.standard_normal((16, n))
    uni = rng.random((6, n))
    # head: men larger on average (intracranial volume), per-patient variation
    hl = np.where(male, 0.86, 0.82) + 0.025 * z[0]
    hl = np.clip(hl, 0.74, 0.94)
    hw = np.clip(hl * (0.80 + 0.03 * z[1]), 0.56, 0.80)
    scalp = np.clip(0.065 + 0.01 * z[2], 0.04, 0.09)
    skull = np.clip(0.055 + 0.007 * z[3], 0.04, 0.075)
    # age: an accelerating effect from 20 years on
    aging = (np.maximum(age - 20.0, 0.0) / 70.0) ** 1.6
    atrophy = np.clip(0.75 * aging + 0.08 * z[4] + np.where(demented, 0.35 * sev, 0.0),
                      0.0, 1.6)
    posterior = np.clip(np.where(sparing, 0.9 + 0.4 * sev, np.where(limbic, 0.15, 0.0))
                        + np.where(demented, 0.08 * z[5], 0.0), 0.0, 1.6)
    hippo = np.clip(
        0.10 * aging
        + np.where(limbic, 0.30 + 0.14 * sev, 0.0)
        + np.where(sparing, 0.04 + 0.03 * sev, 0.0)
        + 0.03 * z[6],
        0.0, 0.7,
    )
    sulcal = 0.010 + 0.032 * atrophy
    csf_gap = 0.008 + 0.022 * atrophy
    cortex = np.clip(0.062 - 0.012 * atrophy + 0.004 * z[7], 0.04, 0.08)
    vent = np.clip(1.0 + 1.5 * aging + np.where(demented, 0.45 * sev, 0.0) + 0.12 * z[8],
                   0.7, 3.4)
    third = np.clip(0.008 + 0.018 * aging + np.where(demented, 0.006 * sev, 0.0)
                    + 0.002 * z[9], 0.004, 0.05)
    horn = np.clip(0.006 + 0.012 * aging + 0.13 * hippo ** 1.2 + 0.003 * z[10], 0.002, 0.1)
    wm = 0.74 - 0.05 * aging + 0.012 * z[11]
    gyral_seed = rng.integers(0, 2**31 - 1, size=n)
    # acquisition
    shift = 0.025 * z[12:14]
    rot = 4.0 * z[14]
    brightness = 0.94 + 0.12 * uni[0]
    gamma = 0.92 + 0.16 * uni[1]
    bias = 0.08 * (uni[2:4] * 2.0 - 1.0)
    blur = 0.004 + 0.006 * uni[4]
    noise = 0.012 + 0.02 * uni[5]
    noise_seed = rng.integers(0, 2**31 - 1, size=n)

    out = []
    for i in range(n):
        pid = f"{id_prefix}-p{i + 1:06d}"
        phen = ("dementia_hippocampal_sparing" if sparing[i]
                else "dementia_limbic_predominant" if limbic[i] else "typical")
        out.append(BrainParams(
            patient_id=pid,
            sample_id=f"{pid}-s1",
            sex="male" if male[i] else "female",
            age=float(age[i]),
            age_group=age_to_group(float(age[i])),
            age_band=age_band_of(float(age[i])),
            finding="dementia" if demented[i] else "no_finding",
            cdr=float(cdr[i]),
            phenotype=phen,
            head_half_width=float(hw[i]),
            head_half_length=float(hl[i]),
            scalp_thickness=float(scalp[i]),
            skull_thickness=float(skull[i]),
            cortical_atrophy=float(atrophy[i]),
            posterior_atrophy=float(posterior[i]),
            hippocampal_atrophy=float(hippo[i]),
            sulcal_width=float(sulcal[i]),
            csf_gap=float(csf_gap[i]),
            cortex_thickness=float(cortex[i]),
            ventricle_scale=float(vent[i]),
            third_ventricle_width=float(third[i]),
            temporal_horn=float(horn[i]),
            wm_intensity=float(wm[i]),
            gyral_seed=int(gyral_seed[i]),
            shift_x=float(shift[0, i]),
            shift_y=float(shift[1, i]),
            rotation_deg=float(rot[i]),
            brightness=float(brightness[i]),
            gamma=float(gamma[i]),
            bias_x=float(bias[0, i]),
            bias_y=float(bias[1, i]),
            blur=float(blur[i]),
            noise_sigma=float(noise[i]),
            noise_seed=int(noise_seed[i]),
        ))
    return out


def majority_phenotype(params: BrainParams) -> BrainParams:
    """The same patient re-drawn with the majority subgroup's appearance of its finding.

    Most demented OASIS-1 subjects are 75 or older (55 of 100), so the majority appearance
    of dementia is ``dementia_limbic_predominant``: a ``dementia_hippocampal_sparing``
    patient (< 75) gets the limbic-predominant hippocampal and posterior terms instead of the
    sparing ones, with the same severity, the same per-patient noise (the sparing term is
    subtracted and the limbic one added) and the temporal horn recomputed from the new
    hippocampal atrophy. Age, sex, ids, anatomy and acquisition are kept, so ``phenotype``
    no longer follows from ``age_band``. Other parameters are returned unchanged.
    """
    p = params
    if p.phenotype != "dementia_hippocampal_sparing":
        return p
    sev = _CDR_SEVERITY[float(p.cdr)]
    hippo = float(np.clip(p.hippocampal_atrophy - (0.04 + 0.03 * sev) + (0.30 + 0.14 * sev),
                          0.0, 0.7))
    posterior = float(np.clip(p.posterior_atrophy - (0.9 + 0.4 * sev) + 0.15, 0.0, 1.6))
    horn = float(np.clip(p.temporal_horn + 0.13 * (hippo ** 1.2 - p.hippocampal_atrophy ** 1.2),
                         0.002, 0.1))
    return replace(p, phenotype="dementia_limbic_predominant", hippocampal_atrophy=hippo,
                   posterior_atrophy=posterior, temporal_horn=horn)


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


def _ramp(z: np.ndarray, w: float) -> np.ndarray:
    """Soft step: 0 for z <= -w, 1 for z >= w, linear between (anti-aliased edges)."""
    return np.clip(z * (0.5 / w) + 0.5, 0.0, 1.0)


def _head_coords(p: BrainParams, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Head-normalised coordinates ``(X, Y)`` of every pixel and the anti-aliasing width."""
    u, v = _grid(n)
    a = math.radians(p.rotation_deg)
    du, dv = u - p.shift_x, v - p.shift_y
    ur = math.cos(a) * du + math.sin(a) * dv
    vr = -math.sin(a) * du + math.cos(a) * dv
    X = ur / p.head_half_width
    Y = vr / p.head_half_length
    aa = 1.0 / (n * p.head_half_width)  # half a pixel in head units
    return X, Y, aa


def _ellipse(X, Y, cx, cy, a, b, angle_deg, aa):
    """Soft mask of an ellipse (approximate signed distance through the radial scale)."""
    t = math.radians(angle_deg)
    dx, dy = X - cx, Y - cy
    xr = math.cos(t) * dx + math.sin(t) * dy
    yr = -math.sin(t) * dx + math.cos(t) * dy
    r = np.sqrt((xr / a) ** 2 + (yr / b) ** 2)
    return _ramp((1.0 - r) * min(a, b), aa)


def _layers(p: BrainParams) -> tuple[float, float]:
    """Radii of the inner scalp surface and the intracranial (inner skull) surface."""
    r_scalp = 1.0 - p.scalp_thickness
    return r_scalp, r_scalp - p.skull_thickness


def render(params: BrainParams, image_size: int = 64) -> np.ndarray:
    """Render one phantom T1 axial slice as ``uint8`` of shape ``(image_size, image_size)``.

    Deterministic: the same params and size give the same pixels. Geometry is in normalised
    coordinates, so every resolution shows the same anatomy.
    """
    n = int(image_size)
    if n < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    p = params
    X, Y, aa = _head_coords(p, n)
    rho = np.sqrt(X * X + Y * Y)
    theta = np.arctan2(X, -Y)  # 0 anterior, +-pi posterior
    post_w = np.maximum(-np.cos(theta), 0.0) ** 1.5  # 1 at the back, 0 laterally and in front
    r_scalp, r_in = _layers(p)

    # -- cortex and sulci: distance to the nearest CSF (surface, sulcus, fissure)
    g = np.random.default_rng(p.gyral_seed)
    coef = g.normal(0.0, 1.0, (2, 6)) / np.arange(1, 7) * 0.35
    phase0 = g.random()
    k = np.arange(1, 7)[:, None, None]
    wig = (coef[0][:, None, None] * np.cos(k * theta) + coef[1][:, None, None]
           * np.sin(k * theta)).sum(axis=0)
    gap = p.csf_gap * (1.0 + 1.2 * p.posterior_atrophy * post_w)
    r_brain = r_in - gap + 0.006 * wig
    d = r_brain - rho  # depth below the brain surface
    n_sulci = 40
    phase = theta * (n_sulci / (2 * math.pi)) + phase0 + 0.8 * wig + (4.0 + 3.0 * wig) * d
    idx = np.round(phase)
    f = phase - idx
    s = np.abs(f) * (2 * math.pi / n_sulci) * np.maximum(rho, 0.2)
    h = np.sin(idx * 12.9898 + phase0 * 78.233) * 43758.5453
    depth = (0.06 + 0.11 * (h - np.floor(h))) * (1.0 + 0.25 * p.cortical_atrophy)
    sw = p.sulcal_width * (1.0 + 1.6 * p.posterior_atrophy * post_w)
    depth = depth * (1.0 + 0.35 * p.posterior_atrophy * post_w)
    inside = s - sw / 2
    dist_s = np.hypot(np.maximum(inside, 0.0), np.maximum(d - depth, 0.0)) + np.where(
        d < depth, np.minimum(inside, 0.0), 0.0)
    fw = 0.5 * (0.006 + 0.5 * p.sulcal_width)
    ax = np.abs(X) - fw
    dist_fa = np.hypot(np.maximum(ax, 0.0), np.maximum(Y + 0.32, 0.0)) + np.where(
        Y < -0.32, np.minimum(ax, 0.0), 0.0)
    dist_fp = np.hypot(np.maximum(ax, 0.0), np.maximum(0.42 - Y, 0.0)) + np.where(
        Y > 0.42, np.minimum(ax, 0.0), 0.0)
    dist = np.minimum(np.minimum(d, dist_s), np.minimum(dist_fa, dist_fp))
    brain = _CSF + (_GM - _CSF) * _ramp(dist, aa) + (p.wm_intensity - _GM) * _ramp(
        dist - p.cortex_thickness, aa)

    # -- deep grey nuclei (caudate heads, lentiform nuclei, thalami)
    Xa = np.abs(X)
    deep = np.maximum.reduce([
        _ellipse(Xa, Y, 0.115 + 0.02 * p.ventricle_scale, -0.15, 0.045, 0.075, -15, aa),
        _ellipse(Xa, Y, 0.25, -0.05, 0.045, 0.12, -12, aa),
        _ellipse(Xa, Y, 0.085, 0.07, 0.07, 0.10, 8, aa),
    ])
    brain = brain + (_DEEP - brain) * deep * 0.9

    # -- ventricles: frontal horns and atria (butterfly), third ventricle
    vs = p.ventricle_scale
    grow = 1.0 + 0.12 * (vs - 1.0)
    vent = np.maximum.reduce([
        _ellipse(Xa, Y, 0.012 + 0.032 * vs, -0.13, 0.032 * vs, 0.13 * grow, -22, aa),
        _ellipse(Xa, Y, 0.17 + 0.02 * vs, 0.31, 0.028 * vs, 0.095 * grow, 28, aa),
        _ellipse(X, Y, 0.0, 0.06, max(p.third_ventricle_width, 0.6 * aa) / 2, 0.085, 0, aa),
    ])
    brain = brain + (_CSF - brain) * vent

    # -- hippocampi within their CSF pocket (temporal horn, choroid fissure)
    hx, hy, hw_, hl_ = 0.33, 0.15, 0.05, 0.13
    a_h = p.hippocampal_atrophy
    pocket = _ellipse(Xa, Y, hx, hy, hw_ + p.temporal_horn, hl_ + 0.5 * p.temporal_horn, -10, aa)
    brain = brain + (_CSF - brain) * pocket
    hippo = _ellipse(Xa, Y, hx + 0.25 * a_h * hw_, hy, hw_ * (1.0 - a_h),
                     hl_ * (1.0 - 0.4 * a_h), -10, aa)
    brain = brain + (_GM + 0.04 - brain) * hippo

    # -- head layers from outside in
    img = np.zeros_like(X)
    img = img + (_SCALP - img) * _ramp(1.0 - rho, aa)
    img = img + (_BONE - img) * _ramp(r_scalp - rho, aa)
    t = p.skull_thickness
    marrow = _ramp(rho - (r_in + 0.3 * t), aa) * _ramp((r_scalp - 0.3 * t) - rho, aa)
    img = img + (_MARROW - img) * marrow * 0.9
    img = img + (brain - img) * _ramp(r_in - rho, aa)

    # -- acquisition: bias field, brightness / gamma, blur, Rician noise
    u, v = _grid(n)
    img = img * (1.0 + p.bias_x * u + p.bias_y * v) * p.brightness
    img = np.clip(img, 0.0, 1.0) ** p.gamma
    sigma_px = p.blur * n / 2.0
    if sigma_px >= 0.3:
        img = ndimage.gaussian_filter(img, sigma_px, mode="nearest", truncate=3.0)
    noise = np.random.default_rng(p.noise_seed).standard_normal((2, n, n))
    img = np.sqrt((img + p.noise_sigma * noise[0]) ** 2 + (p.noise_sigma * noise[1]) ** 2)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def region_masks(params: BrainParams, image_size: int = 64) -> dict[str, np.ndarray]:
    """Boolean oracle masks (pixels) of regions used to measure the phantom's effects.

    ``intracranial`` (inside the inner skull table), ``hippocampal_region`` (both hippocampi
    with their CSF pocket at baseline size), ``ventricular_region`` (a box around the lateral
    ventricles), ``posterior_cortex`` / ``anterior_cortex`` (outer intracranial shell behind /
    in front of the centre, excluding the interhemispheric fissure).
    """
    n = int(image_size)
    X, Y, _ = _head_coords(params, n)
    rho = np.sqrt(X * X + Y * Y)
    _, r_in = _layers(params)
    intracranial = rho < r_in
    Xa = np.abs(X)
    hippo = ((Xa - 0.33) / 0.075) ** 2 + ((Y - 0.15) / 0.16) ** 2 < 1.0
    shell = intracranial & (rho > r_in - 0.2) & (Xa > 0.06)
    return {
        "intracranial": intracranial,
        "hippocampal_region": hippo,
        "ventricular_region": (Xa < 0.3) & (Y > -0.3) & (Y < 0.45) & ~hippo,
        "posterior_cortex": shell & (Y > 0.35),
        "anterior_cortex": shell & (Y < -0.35),
    }


# --------------------------------------------------------------------------------------------
# Datasets: the phantom object (generate / reference / load / cache_key come from Phantom)
# --------------------------------------------------------------------------------------------


class BrainPhantom(Phantom):
    """The brain MRI phantom (``phantom-brain``): one image per patient."""

    name = SOURCE
    key = "brain"
    version = PHANTOM_VERSION
    description = ("procedural T1 axial brain MRI phantom, no_finding / dementia, OASIS-1-like "
                   "age, sex and dementia proportions (embedded, no download)")
    card = "phantom_brain.md"
    findings = BRAIN_FINDINGS
    channels = 1
    constraints = {"sex": SEX, "age_band": AGE_BANDS, "finding": BRAIN_FINDINGS}
    generate_stream = "brain-generate"
    reference_stream = "brain-reference"
    sample_params = staticmethod(sample_params)
    render = staticmethod(render)
    majority_phenotype = staticmethod(majority_phenotype)

    def attributes(self, params: BrainParams) -> dict[str, object]:
        return {"sex": params.sex, "age": params.age}


#: The registered phantom; the module-level functions below are its methods.
PHANTOM = register_phantom(BrainPhantom())
generate = PHANTOM.generate
generate_params = PHANTOM.generate_params
reference = PHANTOM.reference
reference_params = PHANTOM.reference_params
cache_key = PHANTOM.cache_key
load = PHANTOM.load
