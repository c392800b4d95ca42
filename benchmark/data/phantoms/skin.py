"""The skin phantom: procedural RGB dermatology photographs calibrated to Fitzpatrick17k counts.

Every image is drawn from an explicit generative model whose parameters are all known (the
"oracle truth", :class:`SkinParams`), so a benchmark can check a generator against ground
truth for any Fitzpatrick type, however rare. The data card ``data_cards/phantom_skin.md``
documents every parameter and its effect.

Generative model
----------------
1. **Patients.** One image per patient (Fitzpatrick17k is an atlas of single photographs and
   records no patient ids). The Fitzpatrick type is drawn from Fitzpatrick17k's real type
   counts, unknown included (:data:`FITZPATRICK17K_TONE_COUNTS`); an image of unknown type has
   ``skin_tone = None`` but is still rendered with a hidden type (``fitzpatrick``) drawn from
   the known-type distribution. ``sex``, ``age``, ``age_group`` and ``race`` are ``None``
   (Fitzpatrick17k records none of them).
2. **Finding.** One of :data:`SKIN_FINDINGS` (FairGen's five Fitzpatrick17k diseases), with
   probabilities :data:`DISEASE_WEIGHTS` (equal: see the data card), independent of the type.
3. **Skin.** A base colour per Fitzpatrick type (:data:`TONE_RGB`, light to dark) with
   per-image jitter, coarse mottling (melanin unevenness), fine pores, optional hairs, an
   illumination gradient and vignetting, a camera blur and sensor noise.
4. **Lesion.** A disease-specific shape and colour model (below), blended over the skin.

Tone-dependent appearance (subgroup-specific phenotypes)
--------------------------------------------------------
The lesion colours are interpolated between a light-skin anchor (type I) and a dark-skin anchor
(type VI), so the same disease looks different by type, as in clinical atlases of skin of
colour: erythema (red) is less visible and the lesion contrast is lower on dark skin;
psoriasis is salmon-pink on types I-II, red-brown on III-IV and grey-violaceous / dark brown on
V-VI; allergic contact dermatitis and lichen planus turn hyperpigmented (brown / grey-brown)
on dark skin; basal cell carcinoma is pigmented (brown-black with a pearly border) on V-VI; and
inflammatory lesions on types IV-VI carry a ring of post-inflammatory hyperpigmentation
(``pih``). The variant is recorded in ``SkinParams.phenotype``.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage

from ...schema import SKIN_TONE
from ._common import (
    check_choice,
)
from .base import Phantom, register_phantom

SKIN_FINDINGS: tuple[str, ...] = (
    "allergic_contact_dermatitis",
    "basal_cell_carcinoma",
    "lichen_planus",
    "psoriasis",
    "squamous_cell_carcinoma",
)

#: Bump whenever sampling or rendering changes: it is part of every cache key.
PHANTOM_VERSION = "skin-1"

SOURCE = "phantom-skin"

#: Fitzpatrick17k images per Fitzpatrick type (scale 1..6) and with an unknown type (-1):
#: Groh et al. 2021, ``fitzpatrick17k.csv`` (16,577 images).
FITZPATRICK17K_TONE_COUNTS: dict[str | None, int] = {
    "I": 2947,
    "II": 4808,
    "III": 3308,
    "IV": 2781,
    "V": 1533,
    "VI": 635,
    None: 565,
}

#: Relative frequency of each finding (order of :data:`SKIN_FINDINGS`). Equal: a documented
#: assumption (the five diseases have similar, few-hundred image counts in Fitzpatrick17k;
#: their exact per-label counts were not available to verify here). Independent of type.
DISEASE_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)

#: Mean sRGB colour of normal skin per Fitzpatrick type (I..VI), light to dark.
TONE_RGB: dict[str, tuple[float, float, float]] = {
    "I": (241.0, 208.0, 188.0),
    "II": (226.0, 186.0, 158.0),
    "III": (200.0, 154.0, 120.0),
    "IV": (164.0, 114.0, 80.0),
    "V": (116.0, 76.0, 52.0),
    "VI": (72.0, 48.0, 36.0),
}

# Lesion colour anchors: (type I colour, type VI colour); a type in between is interpolated
# linearly with t = (type - 1) / 5.
_ANCHORS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "psoriasis": ((228.0, 124.0, 108.0), (96.0, 62.0, 72.0)),
    "psoriasis_scale": ((236.0, 233.0, 230.0), (176.0, 170.0, 172.0)),
    "allergic_contact_dermatitis": ((214.0, 100.0, 90.0), (34.0, 20.0, 17.0)),
    "lichen_planus": ((148.0, 82.0, 126.0), (46.0, 32.0, 40.0)),
    "lichen_planus_striae": ((228.0, 222.0, 232.0), (160.0, 154.0, 160.0)),
    "basal_cell_carcinoma": ((236.0, 176.0, 178.0), (40.0, 28.0, 26.0)),
    "basal_cell_carcinoma_border": ((246.0, 226.0, 222.0), (168.0, 146.0, 136.0)),
    "squamous_cell_carcinoma": ((202.0, 112.0, 96.0), (92.0, 56.0, 44.0)),
    "squamous_cell_carcinoma_keratin": ((214.0, 198.0, 156.0), (170.0, 152.0, 118.0)),
}

_VARIANTS: dict[str, tuple[str, str, str]] = {  # (types I-II, III-IV, V-VI)
    "allergic_contact_dermatitis": ("red_eczematous", "red_brown_eczematous",
                                    "hyperpigmented_eczematous"),
    "basal_cell_carcinoma": ("pearly_pink_papule", "pearly_papule", "pigmented_pearly_papule"),
    "lichen_planus": ("violaceous_papules", "purple_brown_papules", "grey_brown_papules"),
    "psoriasis": ("salmon_pink_plaque", "red_brown_plaque", "grey_violaceous_plaque"),
    "squamous_cell_carcinoma": ("erythematous_keratotic_nodule", "red_brown_keratotic_nodule",
                                "hyperpigmented_keratotic_nodule"),
}

_INFLAMMATORY = ("allergic_contact_dermatitis", "lichen_planus", "psoriasis")


def _tone_index(tone: str) -> int:
    return SKIN_TONE.index(tone)


def _anchor(name: str, tone: str) -> np.ndarray:
    light, dark = (np.asarray(c) for c in _ANCHORS[name])
    t = _tone_index(tone) / 5.0
    return (1.0 - t) * light + t * dark


def erythema_visibility(tone: str) -> float:
    """How visible erythema is on a Fitzpatrick type: 1 on type I down to 0.25 on type VI."""
    return float(1.0 - 0.15 * _tone_index(tone))


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkinParams:
    """Every generating parameter of one phantom image (the oracle truth).

    Coordinates are normalised: ``x`` runs from -1 (left) to 1 (right) across the image, ``y``
    from -1 (top) to 1 (bottom); lengths are in the same units (2 = the image side). Colours
    are sRGB floats on 0..255.
    """

    # identity
    patient_id: str
    sample_id: str
    texture_seed: int  # seeds the texture offsets, hairs and sensor noise
    lesion_seed: int  # seeds the lesion's outline harmonics and its papule / plaque layout
    skin_tone: str | None  # the recorded Fitzpatrick type (None: unknown, as in the source)
    fitzpatrick: str  # the rendered type (equals skin_tone when that is known)
    finding: str
    phenotype: str  # "<finding>:<variant>[+pih]", the tone-dependent appearance
    # skin
    skin_rgb: tuple[float, float, float]
    mottle: float  # amplitude of coarse melanin mottling
    pore_depth: float  # darkening of the fine pore texture
    n_hairs: int
    hair_rgb: tuple[float, float, float]
    illum_angle: float  # direction of the illumination gradient (radians)
    illum_strength: float  # brightness change across the image from the gradient
    vignette: float
    blur: float  # Gaussian blur std in normalised units
    noise_sigma: float  # sensor noise std on the 0..1 scale
    # lesion
    lesion_x: float
    lesion_y: float
    lesion_radius: float  # size of the lesion (of each papule / plaque for clustered ones)
    lesion_aspect: float  # length / width (>= 1)
    lesion_angle: float  # orientation (radians)
    irregularity: float  # amplitude of the outline's angular harmonics
    edge_width: float  # softness of the outline (ill-defined lesions have a wide edge)
    n_components: int  # papules (lichen planus) or plaques (psoriasis); 1 otherwise
    cluster_radius: float  # spread of the components around the lesion centre
    lesion_rgb: tuple[float, float, float]  # the lesion's body colour
    lesion_opacity: float  # blend weight of the body colour
    detail_rgb: tuple[float, float, float]  # scale / striae / rolled border / keratin colour
    detail_amount: float  # 0..1 coverage or strength of that detail
    erythema_visibility: float  # 1 (type I) .. 0.25 (type VI); scales red rims and vessels
    vesicles: float  # 0..1 density of small vesicles (dermatitis)
    telangiectasia: int  # number of fine red vessels (basal cell carcinoma)
    ulcer: float  # relative radius of a central ulcer / crust (0: none)
    pih: float  # strength of the post-inflammatory hyperpigmentation ring (0: none)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _tone_probabilities() -> tuple[list[str | None], np.ndarray]:
    tones = list(FITZPATRICK17K_TONE_COUNTS)
    counts = np.array([FITZPATRICK17K_TONE_COUNTS[t] for t in tones], float)
    return tones, counts / counts.sum()


def _variant(finding: str, tone: str) -> str:
    return _VARIANTS[finding][_tone_index(tone) // 2]


def _jitter_rgb(rng: np.random.Generator, rgb: np.ndarray, rel: float) -> tuple[float, ...]:
    out = np.clip(rgb * (1.0 + rel * rng.standard_normal(3)) * (1.0 + rel * rng.standard_normal()),
                  0.0, 255.0)
    return tuple(round(float(c), 3) for c in out)


def _one(rng: np.random.Generator, idx: int, id_prefix: str, recorded: str | None,
         tone: str, finding: str) -> SkinParams:
    ti = _tone_index(tone)
    dark = ti / 5.0
    skin_rgb = _jitter_rgb(rng, np.asarray(TONE_RGB[tone]), 0.035)
    vis = erythema_visibility(tone)
    pih = float(rng.uniform(0.25, 0.45) * (ti - 2) / 3.0) if (
        finding in _INFLAMMATORY and ti >= 3) else 0.0
    variant = _variant(finding, tone) + ("+pih" if pih > 0 else "")

    radius, aspect, irregularity, edge = 0.3, 1.0, 0.1, 0.02
    n_comp, cluster = 1, 0.0
    opacity, detail_amount, vesicles, tel, ulcer = 0.9, 0.0, 0.0, 0, 0.0
    detail = _anchor(finding, tone)
    if finding == "allergic_contact_dermatitis":
        radius = rng.uniform(0.18, 0.25)  # half-width of a linear / geometric band
        aspect = rng.uniform(2.2, 3.6)
        irregularity = rng.uniform(0.08, 0.18)
        edge = rng.uniform(0.07, 0.11)  # ill-defined
        opacity = rng.uniform(0.7, 0.85)
        vesicles = rng.uniform(0.5, 1.0)
        detail = np.asarray(skin_rgb) * 0.35 + 255.0 * 0.65 * (0.6 + 0.4 * (1 - dark))
        detail_amount = rng.uniform(0.3, 0.6)  # scaling
    elif finding == "basal_cell_carcinoma":
        radius = rng.uniform(0.2, 0.28)
        aspect = rng.uniform(1.0, 1.25)
        irregularity = rng.uniform(0.03, 0.08)
        edge = 0.02
        opacity = rng.uniform(0.85, 0.95)
        detail = _anchor("basal_cell_carcinoma_border", tone)
        detail_amount = rng.uniform(0.7, 1.0)  # rolled pearly border
        tel = int(rng.integers(2, 5))
        ulcer = float(rng.uniform(0.3, 0.5)) if rng.random() < 0.5 else 0.0
    elif finding == "lichen_planus":
        radius = rng.uniform(0.055, 0.085)
        aspect = 1.0
        irregularity = 0.0
        edge = 0.012
        n_comp = int(rng.integers(7, 14))
        cluster = rng.uniform(0.35, 0.5)
        opacity = rng.uniform(0.85, 0.95)
        detail = _anchor("lichen_planus_striae", tone)
        detail_amount = rng.uniform(0.5, 0.9)  # Wickham striae
    elif finding == "psoriasis":
        radius = rng.uniform(0.2, 0.3)
        aspect = rng.uniform(1.0, 1.5)
        irregularity = rng.uniform(0.08, 0.16)
        edge = 0.015  # well demarcated
        n_comp = int(rng.integers(1, 4))
        cluster = rng.uniform(0.25, 0.4) if n_comp > 1 else 0.0
        opacity = rng.uniform(0.9, 0.97)
        detail = _anchor("psoriasis_scale", tone)
        detail_amount = rng.uniform(0.45, 0.75)  # silvery scale
    elif finding == "squamous_cell_carcinoma":
        radius = rng.uniform(0.24, 0.32)
        aspect = rng.uniform(1.0, 1.4)
        irregularity = rng.uniform(0.18, 0.3)
        edge = 0.02
        opacity = rng.uniform(0.88, 0.96)
        detail = _anchor("squamous_cell_carcinoma_keratin", tone)
        detail_amount = rng.uniform(0.5, 0.8)  # keratin crust
        ulcer = float(rng.uniform(0.25, 0.4)) if rng.random() < 0.4 else 0.0
    lesion_rgb = _jitter_rgb(rng, _anchor(finding, tone), 0.04)

    hair = np.asarray(skin_rgb) * rng.uniform(0.15, 0.35)
    pid = f"{id_prefix}-p{idx:06d}"
    return SkinParams(
        patient_id=pid,
        sample_id=f"{pid}-s1",
        texture_seed=int(rng.integers(2**31)),
        lesion_seed=int(rng.integers(2**31)),
        skin_tone=recorded,
        fitzpatrick=tone,
        finding=finding,
        phenotype=f"{finding}:{variant}",
        skin_rgb=skin_rgb,
        mottle=float(rng.uniform(0.02, 0.06)),
        pore_depth=float(rng.uniform(0.02, 0.05)),
        n_hairs=int(rng.choice(6, p=[0.45, 0.2, 0.15, 0.1, 0.05, 0.05])),
        hair_rgb=tuple(round(float(c), 3) for c in hair),
        illum_angle=float(rng.uniform(0.0, 2 * np.pi)),
        illum_strength=float(rng.uniform(0.03, 0.12)),
        vignette=float(rng.uniform(0.02, 0.1)),
        blur=float(rng.uniform(0.004, 0.012)),
        noise_sigma=float(rng.uniform(0.006, 0.015)),
        lesion_x=float(rng.uniform(-0.15, 0.15)),
        lesion_y=float(rng.uniform(-0.15, 0.15)),
        lesion_radius=float(radius),
        lesion_aspect=float(aspect),
        lesion_angle=float(rng.uniform(0.0, np.pi)),
        irregularity=float(irregularity),
        edge_width=float(edge),
        n_components=n_comp,
        cluster_radius=float(cluster),
        lesion_rgb=lesion_rgb,
        lesion_opacity=float(opacity),
        detail_rgb=tuple(round(float(c), 3) for c in np.clip(detail, 0, 255)),
        detail_amount=float(detail_amount),
        erythema_visibility=vis,
        vesicles=float(vesicles),
        telangiectasia=tel,
        ulcer=ulcer,
        pih=pih,
    )


def sample_params(
    rng: np.random.Generator,
    n: int,
    *,
    skin_tone: str | None = None,
    finding: str | None = None,
    id_prefix: str = "skin",
) -> list[SkinParams]:
    """Draw the parameters of ``n`` images (one per patient, ids ``<prefix>-p000001``...).

    Args:
        rng: the only source of randomness (same generator state -> same parameters).
        n: number of images.
        skin_tone: a Fitzpatrick type to fix (``"I"``..``"VI"``); ``None`` draws it from
            Fitzpatrick17k's counts, unknown type (``skin_tone=None`` in the row) included.
        finding: a finding of :data:`SKIN_FINDINGS` to fix; ``None`` draws it from
            :data:`DISEASE_WEIGHTS` (independent of the type).
        id_prefix: prefix of patient and sample ids.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    check_choice("skin_tone", skin_tone, SKIN_TONE)
    check_choice("finding", finding, SKIN_FINDINGS)
    tones, probs = _tone_probabilities()
    known = np.array([FITZPATRICK17K_TONE_COUNTS[t] for t in SKIN_TONE], float)
    known /= known.sum()
    weights = np.asarray(DISEASE_WEIGHTS, float) / sum(DISEASE_WEIGHTS)
    out = []
    for i in range(n):
        if skin_tone is None:
            recorded = tones[int(rng.choice(len(tones), p=probs))]
            tone = recorded if recorded is not None else SKIN_TONE[
                int(rng.choice(len(SKIN_TONE), p=known))]
        else:
            recorded = tone = skin_tone
        f = finding or SKIN_FINDINGS[int(rng.choice(len(SKIN_FINDINGS), p=weights))]
        out.append(_one(rng, i + 1, id_prefix, recorded, tone, f))
    return out


#: The Fitzpatrick type whose lesion appearance :func:`majority_phenotype` gives to the others:
#: type II, the most frequent type of the most frequent group (light, I-II) in Fitzpatrick17k.
MAJORITY_TONE = "II"


def majority_phenotype(params: SkinParams) -> SkinParams:
    """The same patient re-drawn with the majority subgroup's appearance of its finding.

    The majority tone group in Fitzpatrick17k is light (types I-II); a medium or dark image
    keeps its own skin (colour, texture, hairs, lighting) and lesion geometry but gets the
    lesion as drawn on type :data:`MAJORITY_TONE`: body and detail colours rescaled from its
    type's anchors to type II's (the per-image colour jitter is kept), type II's erythema
    visibility, and no post-inflammatory hyperpigmentation. Light images are returned
    unchanged.
    """
    p = params
    if _tone_index(p.fitzpatrick) < 2:
        return p
    tone, major = p.fitzpatrick, MAJORITY_TONE

    def rescale(rgb: tuple[float, ...], name: str) -> tuple[float, ...]:
        ratio = _anchor(name, major) / np.maximum(_anchor(name, tone), 1.0)
        return tuple(round(float(c), 3) for c in np.clip(np.asarray(rgb) * ratio, 0.0, 255.0))

    f = p.finding
    if f == "allergic_contact_dermatitis":  # scaling colour: recomputed for the lighter type
        dark = _tone_index(major) / 5.0
        detail = np.asarray(p.skin_rgb) * 0.35 + 255.0 * 0.65 * (0.6 + 0.4 * (1 - dark))
        detail_rgb = tuple(round(float(c), 3) for c in np.clip(detail, 0, 255))
    else:
        detail_name = {
            "basal_cell_carcinoma": "basal_cell_carcinoma_border",
            "lichen_planus": "lichen_planus_striae",
            "psoriasis": "psoriasis_scale",
            "squamous_cell_carcinoma": "squamous_cell_carcinoma_keratin",
        }[f]
        detail_rgb = rescale(p.detail_rgb, detail_name)
    return replace(p, lesion_rgb=rescale(p.lesion_rgb, f), detail_rgb=detail_rgb,
                   erythema_visibility=erythema_visibility(major), pih=0.0,
                   phenotype=f"{f}:{_variant(f, major)}")


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

_BANK = 256  # side of the periodic noise fields (pixels)


@functools.lru_cache(maxsize=8)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = ((np.arange(n) + 0.5) / n * 2.0 - 1.0).astype(np.float32)
    X, Y = np.meshgrid(c, c)
    X.setflags(write=False)
    Y.setflags(write=False)
    return X, Y


def _ramp(z: np.ndarray, w: float) -> np.ndarray:
    """Soft step: 0 for z <= -w, 1 for z >= w, linear between (anti-aliased edges)."""
    return np.clip(z * (0.5 / w) + 0.5, 0.0, 1.0)


@functools.lru_cache(maxsize=1)
def _noise_bank() -> tuple[np.ndarray, np.ndarray]:
    """Two fixed periodic noise fields (coarse, fine; unit variance; a fixed seed)."""
    r = np.random.default_rng(20240614)
    out = []
    for sigma in (6.0, 1.2):
        f = ndimage.gaussian_filter(r.standard_normal((_BANK, _BANK)), sigma, mode="wrap")
        f = ((f - f.mean()) / f.std()).astype(np.float32)
        out.append(np.pad(f, ((0, 1), (0, 1)), mode="wrap"))
    return out[0], out[1]


def _lookup(field: np.ndarray, x: np.ndarray, y: np.ndarray, offset: np.ndarray,
            scale: float) -> np.ndarray:
    """Bilinear, periodic lookup of a bank field at ``(x, y) * scale + offset``."""
    fx = x * scale + offset[0]
    fy = y * scale + offset[1]
    x0 = np.floor(fx)
    y0 = np.floor(fy)
    ax = fx - x0
    ay = fy - y0
    flat = (y0.astype(np.intp) % _BANK) * (_BANK + 1) + x0.astype(np.intp) % _BANK
    f = field.ravel()
    top = f[flat] + (f[flat + 1] - f[flat]) * ax
    bottom = f[flat + _BANK + 1] + (f[flat + _BANK + 2] - f[flat + _BANK + 1]) * ax
    return top + (bottom - top) * ay


def _components(p: SkinParams) -> np.ndarray:
    """Centres, radii, angles and outline harmonics of the lesion's components, (k, 10)."""
    r = np.random.default_rng(p.lesion_seed)
    k = p.n_components
    if k == 1:
        centres = np.array([[p.lesion_x, p.lesion_y]])
        radii = np.array([p.lesion_radius])
        angles = np.array([p.lesion_angle])
    else:
        rho = p.cluster_radius * np.sqrt(r.uniform(0.0, 1.0, k))
        phi = r.uniform(0.0, 2 * np.pi, k)
        centres = np.stack([p.lesion_x + rho * np.cos(phi), p.lesion_y + rho * np.sin(phi)], 1)
        radii = p.lesion_radius * r.uniform(0.7, 1.2, k)
        angles = r.uniform(0.0, np.pi, k)
    harm = r.standard_normal((k, 3)) * np.array([1.0, 0.7, 0.5])
    phases = r.uniform(0.0, 2 * np.pi, (k, 3))
    return np.concatenate([centres, radii[:, None], angles[:, None], harm, phases], axis=1)


def _shape(p: SkinParams, X: np.ndarray, Y: np.ndarray, w_px: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """The lesion's alpha (0..1, anti-aliased) and its signed depth (>0 inside, in radii)."""
    comp = _components(p)
    dx = X[None] - comp[:, 0, None, None].astype(np.float32)
    dy = Y[None] - comp[:, 1, None, None].astype(np.float32)
    ca = np.cos(comp[:, 3])[:, None, None].astype(np.float32)
    sa = np.sin(comp[:, 3])[:, None, None].astype(np.float32)
    a = (dx * ca + dy * sa) / np.float32(p.lesion_aspect)
    b = -dx * sa + dy * ca
    if p.finding == "lichen_planus":  # flat-topped polygonal (hexagonal) papules
        dist = np.maximum(np.abs(a), np.abs(0.5 * a + 0.866 * b))
        dist = np.maximum(dist, np.abs(-0.5 * a + 0.866 * b))
    elif p.finding == "allergic_contact_dermatitis":  # geometric band (superellipse)
        dist = (a**4 + b**4) ** 0.25
    else:
        dist = np.sqrt(a * a + b * b)
    theta = np.arctan2(b, a)
    outline = np.ones_like(dist)
    for j, kk in enumerate((2, 3, 5)):
        amp = (p.irregularity * comp[:, 4 + j])[:, None, None].astype(np.float32)
        outline = outline + amp * np.cos(kk * theta + comp[:, 7 + j, None, None])
    radii = comp[:, 2, None, None].astype(np.float32)
    depth = (outline * radii - dist)  # normalised units, > 0 inside
    w = max(p.edge_width, w_px)
    alpha = _ramp(depth, w).max(axis=0)
    rel = (depth / radii).max(axis=0)
    return alpha, rel


def lesion_mask(params: SkinParams, image_size: int = 64) -> np.ndarray:
    """Boolean ``(image_size, image_size)`` mask of the lesion (alpha > 0.5): the oracle
    segmentation, excluding the surrounding hyperpigmentation ring."""
    n = int(image_size)
    X, Y = _grid(n)
    alpha, _ = _shape(params, X, Y, 1.0 / n)
    return alpha > 0.5


def _blend(img: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    w = np.clip(weight, 0.0, 1.0)[..., None]
    return img * (1.0 - w) + colour * w


def render(params: SkinParams, image_size: int = 64) -> np.ndarray:
    """Render one phantom photograph as a ``uint8`` array of shape ``(image_size, image_size, 3)``.

    Geometry is in normalised coordinates, so every resolution shows the same skin and lesion;
    edges are anti-aliased to at least one pixel. Deterministic: the same params and size give
    the same pixels.
    """
    n = int(image_size)
    if n < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    p = params
    X, Y = _grid(n)
    w_px = 1.0 / n  # half a pixel in normalised units
    coarse, fine = _noise_bank()
    tr = np.random.default_rng(p.texture_seed)
    offs = tr.uniform(0.0, _BANK, (4, 2))

    # -- normal skin: base colour, mottling, pores, illumination
    base = np.asarray(p.skin_rgb, np.float32) / 255.0
    mottle = _lookup(coarse, X, Y, offs[0], 24.0)
    pores = _lookup(fine, X, Y, offs[1], 70.0)
    pore_dark = p.pore_depth * np.clip(pores - 0.8, 0.0, None)
    tint = np.array([1.0, 1.15, 1.3], np.float32)  # melanin mottling darkens blue most
    img = base * (1.0 - (p.mottle * mottle)[..., None] * tint - pore_dark[..., None])

    # -- lesion
    alpha, depth = _shape(p, X, Y, w_px)
    lesion = np.asarray(p.lesion_rgb, np.float32) / 255.0
    detail = np.asarray(p.detail_rgb, np.float32) / 255.0
    texture = _lookup(fine, X, Y, offs[2], 45.0)
    tex_coarse = _lookup(coarse, X, Y, offs[3], 40.0)
    vis = p.erythema_visibility
    red = np.array([0.78, 0.22, 0.22], np.float32)

    if p.pih > 0:  # post-inflammatory hyperpigmentation ring around inflammatory lesions
        ring = np.clip(1.0 - np.abs(depth + 0.25) / 0.35, 0.0, 1.0) * (1.0 - alpha)
        img = img * (1.0 - p.pih * ring[..., None] * np.array([0.55, 0.6, 0.6], np.float32))
    if p.finding == "allergic_contact_dermatitis":
        patchy = alpha * np.clip(0.85 + 0.2 * tex_coarse, 0.6, 1.0)
        img = _blend(img, lesion * (1.0 + 0.08 * texture[..., None]), p.lesion_opacity * patchy)
        ves = np.clip(texture - 1.5, 0.0, 0.6) / 0.6 * alpha * p.vesicles
        img = _blend(img, detail, ves)
        scale = np.clip(tex_coarse - 0.4, 0.0, 1.0) * alpha * p.detail_amount * 0.35
        img = _blend(img, detail, scale)
    elif p.finding == "basal_cell_carcinoma":
        body = lesion * (1.0 + 0.05 * texture[..., None])
        img = _blend(img, body, p.lesion_opacity * alpha)
        rim = np.exp(-(((depth - 0.12) / 0.1) ** 2)) * alpha  # rolled pearly border
        img = _blend(img, detail, p.detail_amount * 0.85 * rim)
        shine = np.exp(-(((X - p.lesion_x + 0.35 * p.lesion_radius) ** 2
                          + (Y - p.lesion_y + 0.35 * p.lesion_radius) ** 2)
                         / (0.3 * p.lesion_radius) ** 2))
        img = _blend(img, np.ones(3, np.float32), 0.35 * shine * alpha)
        for _ in range(p.telangiectasia):  # fine branching red vessels
            t, x0, y0, c = tr.uniform(0, np.pi), *tr.uniform(-0.5, 0.5, 2) * p.lesion_radius, \
                tr.uniform(-4.0, 4.0)
            u = (X - p.lesion_x - x0) * np.cos(t) + (Y - p.lesion_y - y0) * np.sin(t)
            d = -(X - p.lesion_x - x0) * np.sin(t) + (Y - p.lesion_y - y0) * np.cos(t)
            line = _ramp(0.008 - np.abs(d + c * u * u), max(0.006, w_px)) * alpha
            img = _blend(img, red * (0.6 + 0.4 * vis) + lesion * 0.2, (0.3 + 0.5 * vis) * line)
        if p.ulcer > 0:
            ulc = _ramp(depth - (1.0 - p.ulcer), 0.05)
            img = _blend(img, np.array([0.42, 0.16, 0.12], np.float32) * (0.5 + 0.5 * vis),
                         0.9 * ulc * alpha)
    elif p.finding == "lichen_planus":
        img = _blend(img, lesion * (1.0 + 0.06 * texture[..., None]), p.lesion_opacity * alpha)
        striae = np.abs(np.sin(60.0 * (X * 0.8 + Y * 0.6) + 3.0 * tex_coarse))
        striae = np.clip((striae - 0.85) / 0.15, 0.0, 1.0) * alpha * p.detail_amount
        img = _blend(img, detail, 0.7 * striae)
    elif p.finding == "psoriasis":
        img = _blend(img, lesion * (1.0 + 0.05 * texture[..., None]), p.lesion_opacity * alpha)
        # thick silvery scale, densest in the plaque centre, flaky (fine texture)
        scale = np.clip(0.6 * texture + 1.6 * np.clip(depth, 0.0, 1.0) - 0.2, 0.0, 1.0)
        img = _blend(img, detail * (1.0 + 0.05 * texture[..., None]),
                     alpha * p.detail_amount * scale)
    elif p.finding == "squamous_cell_carcinoma":
        rim = np.clip(1.0 - np.abs(depth + 0.1) / 0.25, 0.0, 1.0) * (1.0 - alpha)
        img = _blend(img, red * 0.9 + lesion * 0.1, 0.45 * vis * rim)  # erythematous rim
        dome = np.clip(1.0 + 0.6 * ((X - p.lesion_x) + (Y - p.lesion_y)) / p.lesion_radius,
                       0.6, 1.4)  # raised nodule lit from the top left
        img = _blend(img, lesion * (1.1 - 0.25 * (dome[..., None] - 1.0)),
                     p.lesion_opacity * alpha)
        keratin = np.clip(0.45 + 0.8 * tex_coarse + 0.5 * texture, 0.0, 1.0)
        keratin = keratin * np.clip(3.0 * depth, 0.0, 1.0) * alpha * p.detail_amount
        img = _blend(img, detail * (1.0 + 0.08 * texture[..., None]), keratin)
        crust = np.clip(-1.5 * tex_coarse - 0.6, 0.0, 1.0) * alpha
        img = _blend(img, np.array([0.36, 0.2, 0.13], np.float32), 0.8 * crust)
        if p.ulcer > 0:
            ulc = _ramp(depth - (1.0 - p.ulcer), 0.05)
            img = _blend(img, np.array([0.45, 0.14, 0.12], np.float32) * (0.5 + 0.5 * vis),
                         0.85 * ulc * alpha)

    # -- hairs (thin dark curved lines across the field)
    hair = np.asarray(p.hair_rgb, np.float32) / 255.0
    for _ in range(p.n_hairs):
        t = tr.uniform(0.0, np.pi)
        x0, y0 = tr.uniform(-0.8, 0.8, 2)
        c = tr.uniform(-0.6, 0.6)
        u = (X - x0) * np.cos(t) + (Y - y0) * np.sin(t)
        d = -(X - x0) * np.sin(t) + (Y - y0) * np.cos(t) + c * u * u
        length = tr.uniform(0.4, 1.0)
        line = _ramp(0.006 - np.abs(d), max(0.005, w_px)) * _ramp(length - np.abs(u), 0.05)
        img = _blend(img, hair, 0.85 * line)

    # -- illumination, camera blur, sensor noise
    illum = (1.0 + p.illum_strength * 0.5 * (np.cos(p.illum_angle) * X + np.sin(p.illum_angle) * Y)
             - p.vignette * (X * X + Y * Y) * 0.5)
    img = img * illum[..., None]
    sigma = p.blur * n / 2.0
    if sigma > 0.3:
        img = ndimage.gaussian_filter(img, (sigma, sigma, 0), mode="nearest")
    img = img + p.noise_sigma * tr.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Datasets: the phantom object (generate / reference / load / cache_key come from Phantom)
# --------------------------------------------------------------------------------------------


class SkinPhantom(Phantom):
    """The skin phantom (``phantom-skin``): one image per patient.

    An unconstrained :meth:`reference` type may be unknown, as in Fitzpatrick17k. The cache
    key includes :data:`FITZPATRICK17K_TONE_COUNTS` and :data:`DISEASE_WEIGHTS`.
    """

    name = SOURCE
    key = "skin"
    version = PHANTOM_VERSION
    description = ("procedural dermatology photo phantom (RGB), FairGen's 5 Fitzpatrick17k "
                   "diseases, Fitzpatrick types calibrated to Fitzpatrick17k counts, "
                   "tone-dependent phenotypes (embedded, no download)")
    card = "phantom_skin.md"
    findings = SKIN_FINDINGS
    channels = 3
    constraints = {"skin_tone": SKIN_TONE, "finding": SKIN_FINDINGS}
    sample_params = staticmethod(sample_params)
    render = staticmethod(render)
    majority_phenotype = staticmethod(majority_phenotype)

    def attributes(self, params: SkinParams) -> dict[str, object]:
        return {"skin_tone": params.skin_tone}

    def calibration(self) -> dict[str, object]:
        return {"tone_counts": [[k, v] for k, v in FITZPATRICK17K_TONE_COUNTS.items()],
                "disease_weights": list(DISEASE_WEIGHTS)}


#: The registered phantom; the module-level functions below are its methods.
PHANTOM = register_phantom(SkinPhantom())
generate = PHANTOM.generate
generate_params = PHANTOM.generate_params
reference = PHANTOM.reference
reference_params = PHANTOM.reference_params
cache_key = PHANTOM.cache_key
load = PHANTOM.load
