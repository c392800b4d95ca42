import itertools

import numpy as np
import pytest

from benchmark import (
    GENERATORS,
    PROFILES,
    Conditioning,
    FitContext,
    Generator,
    Plan,
    PlanRow,
    allocate,
    attach_sources,
    cell_counts,
)
from benchmark.generators import water_fill
from benchmark.tasks import Task

TASK = Task(
    name="test-task",
    description="test",
    dataset="phantom-cxr",
    classes=("no_finding", "cardiomegaly", "edema"),
    sensitive_attributes=("sex",),
    prompt_template="{sex} {finding}",
)


def test_water_fill_hand_worked():
    # counts 1, 3, 10 with 5 images: the two small cells rise to level 4.5 (3.5 + 1.5 = 5);
    # floors 3 and 1 leave one image, which goes to the smaller cell on the 0.5/0.5 tie.
    assert water_fill([1, 3, 10], 5) == [4, 1, 0]
    assert water_fill([5, 5], 3) == [2, 1]
    assert water_fill([2, 7], 0) == [0, 0]
    assert water_fill([0, 0, 9], 30) == [13, 13, 4]  # level 13: 13 + 13 + 4 = 30


@pytest.mark.parametrize("seed", range(20))
def test_water_fill_levels_cells_to_within_one(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, size=rng.integers(1, 12)).tolist()
    budget = int(rng.integers(0, 300))
    alloc = water_fill(counts, budget)
    assert sum(alloc) == budget and min(alloc) >= 0
    after = [n + a for n, a in zip(counts, alloc, strict=True)]
    # every cell that received images ends no more than 1 above any other cell
    for i, j in itertools.product(range(len(counts)), repeat=2):
        if alloc[i] > 0:
            assert after[i] <= after[j] + 1


def test_allocate_builds_prompts_and_fills_small_cells(tiny_dataset):
    counts = cell_counts(tiny_dataset, TASK)
    plan = allocate(tiny_dataset, TASK, budget=12, seed=3)
    assert plan.total == 12 and plan.seed == 3
    assert {(tuple(v for _, v in r.group), r.finding) for r in plan.rows} == set(counts)
    by_cell = {(r.attributes["sex"], r.finding): r for r in plan.rows}
    # female rows (every 4th) are the minority: they receive the budget first
    assert by_cell[("female", "edema")].count > by_cell[("male", "edema")].count
    assert by_cell[("female", "edema")].prompt == "female edema"


def test_allocate_leaves_out_rows_whose_finding_is_outside_the_task(tiny_dataset, caplog):
    findings = list(tiny_dataset["finding"])
    findings[:3] = ["fracture"] * 3  # not a class of TASK
    ds = tiny_dataset.remove_columns("finding").add_column("finding", findings)
    with caplog.at_level("INFO", logger="benchmark.generators"):
        plan = allocate(ds, TASK, budget=12)
    assert plan.total == 12 and all(r.finding in TASK.classes for r in plan.rows)
    assert "3 training rows have a finding outside" in caplog.text


def test_generator_rejects_unknown_options():
    cls = GENERATORS.get("oversample")
    with pytest.raises(ValueError, match="unknown option.*bogus"):
        cls({"bogus": 1})


def test_entry_point_plugins_are_registered():
    assert {"oversample", "real-only"} <= set(GENERATORS.names())
    for _, cls in GENERATORS.items():
        assert issubclass(cls, Generator)


def test_oversample_copies_real_images_of_the_planned_cells(tiny_dataset):
    # the protocol (counts per cell, schema, source, save / load) is in
    # tests/test_generator_contract.py
    gen = GENERATORS.get("oversample")()
    gen.fit(tiny_dataset, FitContext(task=TASK, profile=PROFILES.get("smoke"), seed=0))
    out = gen.sample(allocate(tiny_dataset, TASK, budget=10, seed=1))
    assert len(out) == 10
    # each synthetic image is pixel-identical to a real training image of its cell
    real = {(s, f, np.asarray(im).tobytes()) for s, f, im in
            zip(tiny_dataset["sex"], tiny_dataset["finding"], tiny_dataset["image"], strict=True)}
    for s, f, im in zip(out["sex"], out["finding"], out["image"], strict=True):
        assert (s, f, np.asarray(im).tobytes()) in real
    # each copy names the real image it copies, from the planned cell
    by_id = {r["sample_id"]: r for r in tiny_dataset.remove_columns(["image"])}
    for s, f, sid, im in zip(out["sex"], out["finding"], out["source_id"], out["image"],
                             strict=True):
        src = by_id[sid]
        assert (src["sex"], src["finding"]) == (s, f)
        assert np.asarray(im).tobytes() == np.asarray(
            tiny_dataset[list(by_id).index(sid)]["image"]).tobytes()


def test_oversample_errors_on_a_cell_without_training_images(tiny_dataset):
    gen = GENERATORS.get("oversample")()
    gen.fit(tiny_dataset, FitContext(task=TASK, profile=PROFILES.get("smoke"), seed=0))
    plan = Plan("t", ("sex",), (PlanRow((("sex", "female"),), "pleural_effusion", 2, "x"),))
    with pytest.raises(ValueError, match="no training image"):
        gen.sample(plan)


def test_real_only_generates_nothing(tiny_dataset):
    gen = GENERATORS.get("real-only")()
    gen.fit(tiny_dataset, FitContext(task=TASK, profile=PROFILES.get("smoke"), seed=0))
    assert len(gen.sample(allocate(tiny_dataset, TASK, budget=5))) == 0


def test_plan_rows_take_one_conditioning_per_image():
    PlanRow((("sex", "male"),), "edema", 2, "p", (Conditioning("a"), Conditioning("b")))
    with pytest.raises(ValueError, match="1 conditioning entries for 2 images"):
        PlanRow((("sex", "male"),), "edema", 2, "p", (Conditioning("a"),))
    row = PlanRow((("sex", "male"),), "edema", 2, "p")
    assert row.conditioning_of(1) == Conditioning(None, None)


def test_attach_sources_spreads_each_cells_samples_before_repeating(tiny_dataset):
    # tiny_dataset: sex female for i % 4 == 0, finding cycles over 3 classes
    plan = Plan(TASK.name, ("sex",), (
        PlanRow((("sex", "female"),), "no_finding", 5, "f nf"),   # cell {0, 12} -> 2 samples
        PlanRow((("sex", "male"),), "edema", 3, "m e"),            # 6 samples
        PlanRow((("sex", "female"),), "edema", 0, "f e"),
    ))
    out = attach_sources(plan, tiny_dataset, TASK, seed=3, control="image")
    rows = {r["sample_id"]: r for r in tiny_dataset.remove_columns(["image"])}
    ids = [[c.source_id for c in r.conditioning] for r in out.rows]
    assert [len(i) for i in ids] == [5, 3, 0]
    # cell of 2 samples asked for 5 images: each used 2 or 3 times; cell of 6 asked for 3:
    # 3 different samples
    assert sorted(ids[0].count(s) for s in set(ids[0])) == [2, 3]
    assert len(set(ids[1])) == 3
    for row, sids in zip(out.rows, ids, strict=True):
        for sid in sids:
            assert (rows[sid]["sex"], rows[sid]["finding"]) == (row.attributes["sex"],
                                                                  row.finding)
    # the control is the source row's own image column; seeded: the same draw again
    first = out.rows[0].conditioning[0]
    src = tiny_dataset[[r for r in rows].index(first.source_id)]["image"]
    assert np.array_equal(np.asarray(first.control), np.asarray(src))
    again = attach_sources(plan, tiny_dataset, TASK, seed=3)
    assert [[c.source_id for c in r.conditioning] for r in again.rows] == ids
    assert again.rows[0].conditioning[0].control is None
    assert plan.as_records()[0]["conditioned"] == 0 and out.as_records()[0]["conditioned"] == 5
    # a function of the source row may make the control (e.g. a sketch)
    made = attach_sources(plan, tiny_dataset, TASK, seed=3, control=lambda r: r["sample_id"])
    assert made.rows[1].conditioning[0].control == made.rows[1].conditioning[0].source_id
    empty = Plan(TASK.name, ("sex",), (PlanRow((("sex", None),), "edema", 1, "x"),))
    with pytest.raises(ValueError, match="no training sample"):
        attach_sources(empty, tiny_dataset, TASK, seed=0)


def test_attach_sources_with_images_per_source_uses_fewer_samples(tiny_dataset):
    # the male / edema cell has 6 samples: 7 images at 3 per source use ceil(7/3) = 3 of
    # them, cycling (3, 2, 2 uses); 2 images at 3 per source use 1 sample twice
    plan = Plan(TASK.name, ("sex",), (PlanRow((("sex", "male"),), "edema", 7, "m e"),
                                      PlanRow((("sex", "male"),), "edema", 2, "m e")))
    out = attach_sources(plan, tiny_dataset, TASK, seed=1, images_per_source=3)
    first, second = ([c.source_id for c in r.conditioning] for r in out.rows)
    assert sorted(first.count(s) for s in set(first)) == [2, 2, 3]
    assert first[:3] == first[3:6] and len(set(second)) == 1
    plain = attach_sources(plan, tiny_dataset, TASK, seed=1)
    assert [c.source_id for c in plain.rows[0].conditioning][:3] == first[:3]  # same order
    with pytest.raises(ValueError, match="images_per_source=0"):
        attach_sources(plan, tiny_dataset, TASK, seed=1, images_per_source=0)
