"""Validity of the harness: its metrics must move the right way, by a stated margin, against
planted-bias diagnostic generators, compared with the ideal phantom generator.

Setting (smoke size, CPU): the skin phantom at 32 px, subgroups = Fitzpatrick tone groups
(light I-II / medium III-IV / dark V-VI), 5 diseases; every set has N_PER_CELL images of each
(group, disease) cell. "Real" images are fresh phantom draws of a stream no generator uses.
Per-group Fréchet distances are computed in the feature space of the smoke skin oracle
(``fd_oracle``: Inception is too slow on a CPU for per-group sets), except the noise check,
which uses the real InceptionV3 FID. The harness's own functions are used throughout
(benchmark.metrics fid / fid_by_group / fid_variance, benchmark.oracle.adherence).

Measured values (2-core CPU, seed 0) are in the comments next to each margin.
"""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from baselines.diagnostics import (
    DropSubgroup,
    EraseMinorityPhenotype,
    ModeCollapse,
    Noisy,
    PhantomOracleGenerator,
)
from benchmark import PROFILES, FitContext, Plan, PlanRow, Task
from benchmark.data.phantoms import skin
from benchmark.metrics import InceptionV3FID, fid, fid_by_group, fid_variance
from benchmark.oracle import NotAPhantomError, draw_cell_params, phantom_spec, stream_seed
from benchmark.oracle.adherence import dataset_adherence
from benchmark.oracle.features import OracleFeatures, fd_oracle, oracle_metrics
from benchmark.schema import SKIN_TONE_GROUPS, validate_dataset

N_PER_CELL = 8
ATTR = "skin_tone_group"
TASK = Task(
    name="validity-skin",
    description="validity checks: skin phantom, 5 diseases x tone group, 32 px",
    dataset="phantom-skin",
    classes=tuple(skin.SKIN_FINDINGS),
    sensitive_attributes=(ATTR,),
    image_size=32,
    channels=3,
)


def _plan(seed: int = 0) -> Plan:
    rows = tuple(
        PlanRow(((ATTR, g),), f, N_PER_CELL, TASK.prompt({ATTR: g}, f))
        for g in SKIN_TONE_GROUPS for f in TASK.classes
    )
    return Plan(TASK.name, TASK.sensitive_attributes, rows, seed)


@pytest.fixture(scope="module")
def oracle(smoke_skin_oracle):
    return smoke_skin_oracle


def real_set():
    """Fresh phantom images of every cell (a stream no generator draws from)."""
    spec = phantom_spec("phantom-skin")
    images, groups, findings = [], [], []
    for g in SKIN_TONE_GROUPS:
        for f in TASK.classes:
            for p in draw_cell_params(spec, N_PER_CELL, {ATTR: g, "finding": f},
                                      seed=stream_seed("validity-real", g, f)):
                images.append(spec.render(p, TASK.image_size))
                groups.append(g)
                findings.append(f)
    return images, groups, findings


#: A training table whose smallest tone group is dark (as in Fitzpatrick17k).
TRAIN = Dataset.from_dict({ATTR: ["light"] * 5 + ["dark"] * 2 + ["medium"] * 3 + [None]})


def sample(cls, config=None, seed=0):
    gen = cls(config)
    gen.fit(TRAIN, FitContext(task=TASK, profile=PROFILES.get("smoke"), seed=seed))
    ds = gen.sample(_plan(seed))
    validate_dataset(ds, source=cls.name)
    return ds


@pytest.fixture(scope="module")
def real():
    return real_set()


@pytest.fixture(scope="module")
def ideal():
    return sample(PhantomOracleGenerator)


@pytest.fixture(scope="module")
def erased():
    return sample(EraseMinorityPhenotype)


def images_of(ds):
    return [np.asarray(im.convert("RGB")) for im in ds["image"]]


def group_fd(oracle, real, ds):
    feats = OracleFeatures(oracle)
    f_real = feats.extract(real[0], progress=False)
    f_syn = feats.extract(images_of(ds), progress=False)
    return fid_by_group(f_real, real[1], f_syn, list(ds[ATTR]))


def _affected_groups() -> set[str]:
    """Tone groups whose images majority_phenotype changes (from the phantom's own truth)."""
    spec = phantom_spec("phantom-skin")
    out = set()
    for g in SKIN_TONE_GROUPS:
        ps = draw_cell_params(spec, 5, {ATTR: g, "finding": "psoriasis"}, seed=1)
        if any(spec.majority_phenotype(p).phenotype != p.phenotype for p in ps):
            out.add(g)
    return out


def test_the_planted_minority_is_medium_and_dark():
    assert _affected_groups() == {"medium", "dark"}


@pytest.mark.slow
def test_phenotype_erasure_raises_minority_fd_and_fd_variance(oracle, real, ideal, erased):
    by_ideal = group_fd(oracle, real, ideal)
    by_erased = group_fd(oracle, real, erased)
    # measured fd_oracle (ideal -> erased): dark 5.8 -> 69, medium 4.3 -> 5.7, light unchanged;
    # variance over the three groups 7.6 -> 850
    dark_ideal, dark_erased = by_ideal["dark"].value, by_erased["dark"].value
    assert dark_erased >= 3.0 * dark_ideal and dark_erased - dark_ideal >= 20.0
    assert by_erased["light"].value == pytest.approx(by_ideal["light"].value)  # untouched
    assert fid_variance(by_erased) >= 10.0 * fid_variance(by_ideal)
    assert by_erased["dark"].n_synthetic == by_ideal["dark"].n_synthetic == 5 * N_PER_CELL


@pytest.mark.slow
def test_phenotype_erasure_lowers_condition_adherence_of_the_minority(oracle, ideal, erased):
    a_ideal = dataset_adherence(oracle, ideal, TASK)["condition"]["by_group"][ATTR]
    a_erased = dataset_adherence(oracle, erased, TASK)["condition"]["by_group"][ATTR]
    # measured condition adherence (ideal -> erased): dark 0.68 -> 0.30
    assert a_ideal["dark"]["value"] - a_erased["dark"]["value"] >= 0.2
    assert a_erased["light"] == a_ideal["light"]  # the majority's images are the same


@pytest.mark.slow
def test_noise_raises_fid(oracle, real, ideal):
    """Real InceptionV3 FID (24 images a side: every 5th image) and fd_oracle both rise."""
    noisy = sample(Noisy, {"sigma": 0.2})
    inception = InceptionV3FID()
    f_real = inception.extract(real[0][::5], progress=False)
    f_ideal = inception.extract(images_of(ideal)[::5], progress=False)
    f_noisy = inception.extract(images_of(noisy)[::5], progress=False)
    # measured FID (24 a side, strongly biased upwards at this size): ideal 183, noisy 374
    assert fid(f_real, f_noisy) >= 1.5 * fid(f_real, f_ideal)
    # measured fd_oracle: ideal 4.8, noisy 1060
    assert fd_oracle(oracle, real[0], images_of(noisy)) >= 10 * fd_oracle(
        oracle, real[0], images_of(ideal))


@pytest.mark.slow
def test_noise_drops_condition_adherence_to_chance(oracle, ideal):
    noisy = sample(Noisy, {"sigma": 0.2})
    # measured: finding adherence 0.2 (chance for 5 balanced classes) in every group
    assert dataset_adherence(oracle, noisy, TASK)["finding"]["value"] <= 0.35
    assert dataset_adherence(oracle, ideal, TASK)["finding"]["value"] >= 0.5


@pytest.mark.slow
def test_dropped_subgroup_has_no_fd_and_overall_fd_rises(oracle, real, ideal):
    dropped = sample(DropSubgroup)  # default: the smallest group of the training data
    assert set(dropped[ATTR]) == {"light", "medium"} and len(dropped) == len(ideal)
    by = group_fd(oracle, real, dropped)
    assert by["dark"].value is None and by["dark"].reason == "no synthetic images"
    # measured fd_oracle overall: ideal 4.8, dark dropped 38
    assert fd_oracle(oracle, real[0], images_of(dropped)) >= 3 * fd_oracle(
        oracle, real[0], images_of(ideal))


def test_drop_subgroup_defaults_to_the_smallest_training_group_and_keeps_the_budget():
    gen = DropSubgroup()
    gen.fit(TRAIN, FitContext(task=TASK, profile=PROFILES.get("smoke"), seed=0))
    assert gen.config == {"attribute": ATTR, "group": "dark"}
    plan = gen.redistribute(_plan())
    counts = {(r.attributes[ATTR], r.finding): r.count for r in plan.rows}
    assert sum(counts.values()) == _plan().total
    assert all(c == 0 for (g, _), c in counts.items() if g == "dark")
    # 40 freed images over 10 equal cells: 4 each
    assert all(c == N_PER_CELL + 4 for (g, _), c in counts.items() if g != "dark")


def test_mode_collapse_repeats_one_image_per_class():
    ds = sample(ModeCollapse)
    assert len(ds) == _plan().total
    by_class: dict[str, set[bytes]] = {}
    for finding, im in zip(ds["finding"], ds["image"], strict=True):
        by_class.setdefault(finding, set()).add(np.asarray(im).tobytes())
    assert set(by_class) == set(TASK.classes)
    assert all(len(v) == 1 for v in by_class.values())
    assert len({next(iter(v)) for v in by_class.values()}) == len(TASK.classes)
    assert sorted(set(ds[ATTR])) == sorted(SKIN_TONE_GROUPS)  # rows keep their requests


def test_diagnostics_refuse_real_data_tasks():
    task = Task(name="real-cxr", description="a real-data task", dataset="chexpert",
                classes=("no_finding", "edema"), sensitive_attributes=("sex",))
    for cls in (PhantomOracleGenerator, EraseMinorityPhenotype, DropSubgroup, ModeCollapse,
                Noisy):
        with pytest.raises(NotAPhantomError, match="only on phantom tasks"):
            cls().fit(Dataset.from_dict({"sex": ["male"]}),
                      FitContext(task=task, profile=PROFILES.get("smoke"), seed=0))


def test_noisy_validates_sigma():
    with pytest.raises(ValueError, match="sigma"):
        Noisy({"sigma": -1})
    with pytest.raises(ValueError, match="unknown option"):
        Noisy({"sigmaa": 0.1})


@pytest.mark.slow
def test_oracle_metrics_block_for_the_result_record(oracle, ideal, erased):
    real_ds = sample(PhantomOracleGenerator, seed=7)  # another fresh draw stands in for real
    out = oracle_metrics(real_ds, erased, TASK, oracle)
    assert out["oracle"]["key"] == oracle.key
    fd = out["fd_oracle"]
    assert fd["n_real"] == fd["n_synthetic"] == len(erased) and fd["value"] > 0
    groups = out["fd_oracle_by_group"][ATTR]
    assert set(groups) == set(SKIN_TONE_GROUPS)
    assert groups["dark"]["value"] > 3 * groups["light"]["value"]
    values = [groups[g]["value"] for g in SKIN_TONE_GROUPS]
    assert out["fd_oracle_variance"][ATTR]["value"] == pytest.approx(np.var(values))
    # the table's group value is the plain Fréchet distance of that group's oracle features
    dark_r = [im for im, g in zip(real_ds["image"], real_ds[ATTR], strict=True) if g == "dark"]
    dark_s = [im for im, g in zip(erased["image"], erased[ATTR], strict=True) if g == "dark"]
    assert groups["dark"]["value"] == pytest.approx(
        fd_oracle(oracle, [np.asarray(im.convert("RGB")) for im in dark_r],
                  [np.asarray(im.convert("RGB")) for im in dark_s]), rel=1e-6)
    assert out["condition_adherence"]["n"] == len(erased)
    assert "fid" not in out  # a Fréchet distance in oracle space is never called FID


def test_mode_collapse_lowers_diversity_and_coverage(ideal, real, oracle):
    """Mode collapse (one image repeated per class) must read as no intra-class diversity
    (the harness's per-class mean pairwise diversity, pixel and perceptual-structure measures)
    and as lower coverage of the real images in the oracle's feature space."""
    from benchmark.evaluation import class_diversity
    from benchmark.metrics.prdc import prdc
    from benchmark.metrics.similarity import PIXEL_DISSIMILARITIES

    collapsed = sample(ModeCollapse)
    fns = {k: PIXEL_DISSIMILARITIES[k] for k in ("mse", "ssim")}

    def diversity(ds):
        per = class_diversity(images_of(ds), list(ds["finding"]), None, fns=fns,
                              max_pairs=200, seed=0)
        return {m: float(np.mean([per[c][m]["value"] for c in per])) for m in fns}

    d_ideal, d_collapsed = diversity(ideal), diversity(collapsed)
    # measured: mse 0.092 -> 0.0, 1 - ssim 0.60 -> 0.0
    for m in fns:
        assert d_ideal[m] > 0.01
        assert d_collapsed[m] == pytest.approx(0.0, abs=1e-9)
    feats = OracleFeatures(oracle)
    f_real = feats.extract(real[0], progress=False)
    cov_ideal = prdc(f_real, feats.extract(images_of(ideal), progress=False)).coverage
    cov_collapsed = prdc(f_real, feats.extract(images_of(collapsed), progress=False)).coverage
    # measured: coverage 0.97 -> 0.19 (5 distinct images cannot cover 120 real ones)
    assert cov_collapsed < 0.5 * cov_ideal
