"""The task's grouper (hand-worked labels, strata, the unknown policy, bad input), the one
policy for unknown values across generation and downstream metrics, and headline metrics."""

import dataclasses

import datasets
import numpy as np
import pytest
from conftest import make_rows
from stand_ins import MeanStdMax

from benchmark import UNKNOWN, Grouper
from benchmark.downstream import DownstreamConfig
from benchmark.downstream import evaluate as dn_eval
from benchmark.evaluation import generation_metrics
from benchmark.headline import (
    default_headline_metrics,
    direction,
    headline,
    headline_value,
    parse,
)
from benchmark.profiles import PROFILES
from benchmark.schema import FEATURES
from benchmark.tasks import TASKS, Task

RECORDS = [
    {"sex": "female", "age_group": "40-59"},
    {"sex": "male", "age_group": None},
    {"sex": None, "age_group": "18-39"},
    {"sex": "female", "age_group": "18-39"},
    {"sex": float("nan"), "age_group": None},
]


def test_labels_hand_worked_with_unknowns():
    g = Grouper(["sex", "age_group"])
    assert list(g.groupings) == ["sex", "age_group", "sex x age_group"]
    out = g.labels(RECORDS)
    assert out.by_grouping["sex"] == ["female", "male", UNKNOWN, "female", UNKNOWN]
    assert out.by_grouping["age_group"] == ["40-59", UNKNOWN, "18-39", "18-39", UNKNOWN]
    # an intersection is unknown when any of its values is
    assert out.by_grouping["sex x age_group"] == ["female x 40-59", UNKNOWN, UNKNOWN,
                                                  "female x 18-39", UNKNOWN]
    # strata keep every attribute's label, so each group is a union of strata
    assert out.strata == ["female|40-59", "male|unknown", "unknown|18-39", "female|18-39",
                          "unknown|unknown"]
    assert out.unknown_counts() == {"sex": 2, "age_group": 2, "sex x age_group": 3}
    assert out.counts("sex") == {"female": 2, "male": 1, UNKNOWN: 2}  # unknown last
    assert g.values(RECORDS)[4] == (None, None)  # NaN is unknown too
    assert g.row_labels(RECORDS[1]) == {"sex": "male", "age_group": UNKNOWN,
                                        "sex x age_group": UNKNOWN}


def test_dataset_columns_and_records_give_the_same_labels():
    ds = datasets.Dataset.from_dict(make_rows(12), features=FEATURES)
    ds = ds.map(lambda r, i: {"sex": None if i % 5 == 0 else r["sex"]}, with_indices=True)
    g = TASKS.get("phantom-cxr-finding").grouper
    a = g.labels(ds)
    cols = {c: ds[c] for c in ("sex", "age_group")}
    b = g.labels(cols)
    c = g.labels([{"sex": s, "age_group": ag} for s, ag in zip(*cols.values(), strict=True)])
    assert a == b == c
    assert a.unknown_counts()["sex"] == 3  # rows 0, 5, 10


def test_groups_from_vocabularies():
    g = Grouper(["sex", "age_band"])
    assert g.groups("sex") == ("female", "male")
    assert g.groups("sex x age_band") == ("female x <75", "female x >=75", "male x <75",
                                          "male x >=75")
    assert g.finest == "sex x age_band"


def test_bad_input_names_the_problem():
    g = Grouper(["sex"])
    with pytest.raises(ValueError, match="no column 'sex'"):
        g.labels([{"age": 3}])
    with pytest.raises(ValueError, match=r"sex value\(s\) \['F'\] are not in its vocabulary"):
        g.labels({"sex": ["female", "F"]})
    with pytest.raises(ValueError, match="unknown attribute 'gender'"):
        Grouper(["gender"])


# ------------------------------------------------------------------ one policy, every stage


def _with_unknown_sex(n, seed, split, every):
    rows = make_rows(n, seed)
    rows["split"] = [split] * n
    rows["sex"] = [None if i % every == 0 else s for i, s in enumerate(rows["sex"])]
    return datasets.Dataset.from_dict(rows, features=FEATURES)


def test_unknown_rows_are_counted_the_same_in_generation_and_downstream(tmp_path):
    """The acceptance case of issue 11: a small set with some ``sex`` unknown. Generation
    and downstream metrics both report the rows in an ``unknown`` group of the same size,
    and neither lets that group into a fairness summary."""
    task = TASKS.get("phantom-cxr-finding")
    test = _with_unknown_sex(24, 2, "test", every=3)  # rows 0, 3, ..., 21: 8 unknown
    synthetic = _with_unknown_sex(24, 3, "train", every=5)  # 5 unknown
    n_unknown = sum(s is None for s in test["sex"])
    assert n_unknown == 8
    profile = dataclasses.replace(PROFILES.get("smoke"), eval_real=24, eval_synthetic=24)
    gen = generation_metrics(test, synthetic, task, profile,
                             extractors={"inception": MeanStdMax()}, progress=False)
    fid_sex = gen["fid_by_group"]["sex"]
    assert (fid_sex[UNKNOWN]["n_real"], fid_sex[UNKNOWN]["n_synthetic"]) == (8, 5)
    assert fid_sex[UNKNOWN]["in_summaries"] is False
    assert sum(e["n_real"] for e in fid_sex.values()) == 24  # nothing dropped
    # the intersection's unknown group holds every row with an unknown sex (age is known)
    inter = gen["fid_by_group"]["sex x age_group"][UNKNOWN]
    assert (inter["n_real"], inter["n_synthetic"]) == (8, 5)
    # FID variance over female and male only: recomputed by hand from the group values
    known = [fid_sex[g]["value"] for g in ("female", "male")]
    assert gen["fid_variance"]["sex"]["n_groups"] == 2
    assert gen["fid_variance"]["sex"]["value"] == pytest.approx(np.var(known))

    train = _with_unknown_sex(36, 0, "train", every=5)
    val = _with_unknown_sex(12, 1, "val", every=5)
    cfg = DownstreamConfig(image_size=16, epochs=1, batch_size=16, patience=5,
                           min_group_size=2, cpu_threads=1, cas=False,
                           saliency_diversity=False)
    down = dn_eval.downstream_metrics(train=train, val=val, test=test, synthetic=None,
                                      task=task, config=cfg, seed=0, progress=False,
                                      work_dir=tmp_path)
    sex = down["classifiers"]["real/tiny-resnet"]["fairness"]["sex"]
    assert sex["by_group"][UNKNOWN]["n"] == fid_sex[UNKNOWN]["n_real"] == n_unknown
    assert sex["by_group"][UNKNOWN]["reason"] == "attribute value unknown"
    assert UNKNOWN not in sex["summary"]["groups_used"]
    assert sum(g["n"] for g in sex["by_group"].values()) == 24  # nothing dropped


def test_diffusion_group_ids_come_from_the_grouper():
    """FairDiffusion's layout maps the grouper's unknown label to no perturbation scale."""
    from types import SimpleNamespace

    from baselines.fairdiffusion.generator import layout_from_data
    from baselines.fairdiffusion.perturbation import MISSING

    labels = Grouper(["sex"]).labels(RECORDS).by_grouping["sex"]
    names = sorted(set(labels))
    layout, maps = layout_from_data(SimpleNamespace(group_names={"sex": names}))
    assert layout.attributes == (("sex", ("female", "male")),)
    assert maps["sex"].tolist() == [0, 1, MISSING]


# ------------------------------------------------------------------ headline metrics


def test_every_task_declares_valid_headline_metrics():
    for name in TASKS.names():
        task = TASKS.get(name)
        assert task.headline_metrics
        for key in task.headline_metrics:
            parse(key, groupings=list(task.grouper.groupings),
                  attributes=task.sensitive_attributes)
    assert TASKS.get("phantom-cxr-finding").headline_metrics == (
        "generation.fid", "generation.es_fid[sex x age_group]",
        "downstream.real+synthetic.accuracy",
        "downstream.real+synthetic.worst_group_accuracy[sex]",
        "downstream.real+synthetic.worst_group_accuracy[age_group]")
    assert "downstream.real+synthetic.es_acc[sex]" in TASKS.get(
        "phantom-cxr-fairgen").headline_metrics


def test_headline_keys_are_checked_against_the_task():
    base = dict(name="t", description="", dataset="phantom-cxr", classes=("no_finding", "edema"),
                sensitive_attributes=("sex",))
    with pytest.raises(ValueError, match="'age_group' is not a grouping"):
        Task(**base, headline_metrics=("generation.es_fid[age_group]",))
    with pytest.raises(ValueError, match="not a sensitive attribute"):
        Task(**base, headline_metrics=("downstream.real.dp[race]",))
    with pytest.raises(ValueError, match="expected 'generation"):
        Task(**base, headline_metrics=("fid",))
    with pytest.raises(ValueError, match="needs a fairness summary"):
        Task(**base, headline_metrics=("generation.fid[sex]",))
    with pytest.raises(ValueError, match=r"needs a \[grouping\]"):
        Task(**base, headline_metrics=("generation.fid_variance",))
    with pytest.raises(ValueError, match="not a downstream summary"):
        Task(**base, headline_metrics=("downstream.real.fid[sex]",))
    custom = Task(**base, headline_metrics=("generation.kid",))
    assert Task.from_dict(custom.as_dict()) == custom
    # the default is not written into the task's dict (config hashes unchanged)
    assert "headline_metrics" not in Task(**base).as_dict()
    assert Task(**base).headline_metrics == default_headline_metrics(("sex",))


def test_headline_values_and_directions_from_a_record():
    metrics = {
        "generation": {"fid": {"value": 12.5}, "es_fid": {"sex": {"value": 20.0}}},
        "downstream": {
            "config": {"backbones": ["resnet50", "efficientnet_b0"]},
            "classifiers": {
                "real+synthetic/resnet50": {
                    "test": {"accuracy": 0.8},
                    "fairness": {"sex": {"summary": {"worst_group_accuracy": 0.7}}}},
                "real+synthetic/efficientnet_b0": {"test": {"accuracy": 0.1}}}},
    }
    keys = ("generation.fid", "generation.es_fid[sex]", "downstream.real+synthetic.accuracy",
            "downstream.real+synthetic.worst_group_accuracy[sex]",
            "downstream.synthetic.accuracy")
    assert headline(metrics, keys) == {  # the first backbone's classifier
        "generation.fid": 12.5, "generation.es_fid[sex]": 20.0,
        "downstream.real+synthetic.accuracy": 0.8,
        "downstream.real+synthetic.worst_group_accuracy[sex]": 0.7,
        "downstream.synthetic.accuracy": None}
    assert headline_value({}, "generation.fid") is None
    assert [direction(k) for k in keys] == ["min", "min", "max", "max", "max"]
    assert direction("generation.precision") == "max"
    assert direction("downstream.real.dp[sex]") == "min"
