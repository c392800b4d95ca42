"""cardiac-controlnet: the metadata prompt (hand cases), the stacked ED/ES control image
(channels), the clipped 1/count weights, and fit on a frozen base -> synthetic copies that
reuse the real masks and prompts of the cells they fill."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark import GENERATORS
from benchmark.data.phantoms import cardiac
from benchmark.generators import FitContext, allocate
from benchmark.profiles import PROFILES
from benchmark.schema import bmi_to_class
from benchmark.tasks import TASKS
from methods.cardiac_controlnet import (
    CardiacControlNet,
    cardiac_prompt,
    clipped_inverse_count_weights,
    other_frames,
    stacked_mask,
    stacked_masks,
)

if CardiacControlNet.name not in GENERATORS.names():  # until the venv lists the entry point
    GENERATORS.register(CardiacControlNet.name, CardiacControlNet)

TASK = TASKS.get("phantom-cardiac-hf")


@pytest.mark.parametrize("row, finding, want", [
    ({"sex": "female", "age": 73.0, "bmi_class": "overweight"}, "no_finding",
     "Female, age in 70s, overweight BMI, healthy"),
    ({"sex": "male", "age": 45.0, "bmi_class": "obese"}, "heart_failure",
     "Male, age in 40s, obese BMI, heart failure"),
    ({"sex": "male", "age": 80.0, "bmi_class": "underweight"}, "heart_failure",
     "Male, age in 80s, underweight BMI, heart failure"),
    ({"sex": "female", "age": None, "bmi_class": "normal"}, "no_finding",
     "Female, normal BMI, healthy"),
    ({"sex": None, "age": 59.9, "bmi_class": None}, "no_finding", "age in 50s, healthy"),
])
def test_prompt_template_hand_cases(row, finding, want):
    assert cardiac_prompt(row, finding) == want


def test_bmi_classes_of_the_prompt_follow_the_code_thresholds():
    got = [bmi_to_class(b) for b in (18.4, 18.5, 24.99, 25.0, 29.99, 30.0)]
    assert got == ["underweight", "normal", "normal", "overweight", "overweight", "obese"]


def test_stacked_control_image_channels():
    ed = np.array([[0, 1], [2, 3]], np.uint8)
    es = np.array([[0, 0], [1, 3]], np.uint8)
    s = stacked_mask(ed, es)
    assert s.shape == (2, 2, 3) and s.dtype == np.uint8
    assert np.array_equal(s[..., 0], ed) and np.array_equal(s[..., 1], es)
    assert np.array_equal(s[..., 2], ed)
    assert np.array_equal(stacked_mask(ed, None), np.stack([ed, ed, ed], -1))
    # rows of a patient: the ED row gets [ED, ES, ED], the ES row [ES, ED, ES]
    assert other_frames(["a-ed", "a-es", "b-ed"], ["a", "a", "b"]) == [1, 0, None]
    with pytest.raises(ValueError, match="3 rows"):
        other_frames(["x", "y", "z"], ["a", "a", "a"])


def test_stacked_masks_of_the_phantom_and_their_tensor(tmp_path):
    from benchmark.diffusion import control_to_tensor

    ds = cardiac.generate(4, image_size=32, seed=0)
    ids = ds["sample_id"]
    assert ids[0].endswith("-ed") and ids[1].endswith("-es")
    ctrl = stacked_masks(ds["mask"], ids, ds["patient_id"])
    ed, es = np.asarray(ds[0]["mask"]), np.asarray(ds[1]["mask"])
    assert not np.array_equal(ed, es)  # systole contracts the heart
    assert np.array_equal(ctrl[0], np.stack([ed, es, ed], -1))
    assert np.array_equal(ctrl[1], np.stack([es, ed, es], -1))
    t = control_to_tensor(ctrl[0], channels=3, resolution=32)
    assert t.shape == (3, 32, 32) and t.dtype == torch.uint8
    assert np.array_equal(t[1].numpy(), es) and int(t.max()) <= 3  # labels, seen as label/255
    with pytest.raises(ValueError, match="no segmentation mask"):
        stacked_masks([None, ds[1]["mask"]], ids[:2], ds["patient_id"][:2])


def test_clipped_inverse_count_weights_by_hand():
    p = ["a", "a", "a", "b"]
    assert clipped_inverse_count_weights(p, 1).tolist() == pytest.approx([1 / 3] * 3 + [1.0])
    assert clipped_inverse_count_weights(p, 2).tolist() == pytest.approx([1 / 3] * 3 + [0.5])
    assert clipped_inverse_count_weights(p, 5).tolist() == pytest.approx([0.2] * 4)
    with pytest.raises(ValueError, match="min_count"):
        clipped_inverse_count_weights(p, 0)


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_fit_on_a_frozen_base_and_sample_synthetic_copies(tmp_path):
    train = cardiac.generate(24, image_size=32, seed=1)
    smoke = PROFILES.get("smoke")
    base = GENERATORS.get("sd-finetune")({"steps": 2})
    base.progress = False
    base.fit(train, FitContext(task=TASK, profile=smoke, seed=0, work_dir=tmp_path / "bw"))
    base.save(tmp_path / "base")
    unet0 = _state(base.backbone.unet)

    gen = CardiacControlNet({"steps": 3, "sample_steps": 2, "checkpoint_every": 3})
    gen.progress = False
    gen.fit(train, FitContext(task=TASK, profile=smoke, seed=0, work_dir=tmp_path / "w",
                              base_checkpoint=tmp_path / "base"))
    b = gen.backbone
    assert b.controlnet is not None and b.controlnet.config.conditioning_channels == 3
    after = _state(b.unet)
    assert all(torch.equal(unet0[k], after[k]) for k in unet0)  # the base stays frozen
    assert gen.resolved["min_count"] == 2

    plan = gen.condition_plan(allocate(train, TASK, 6, seed=0), train)
    out = gen.sample(plan)
    assert len(out) == 6
    by_id = {r["sample_id"]: r for r in train}
    prompts = gen.prompts_for(plan)
    for i, r in enumerate(out):
        src = by_id[r["source_id"]]
        assert (r["sex"], r["bmi_class"], r["finding"]) == (src["sex"], src["bmi_class"],
                                                            src["finding"])
        assert prompts[i] == cardiac_prompt(src, src["finding"])
        assert np.asarray(r["control"]).shape == (32, 32, 3)
        assert np.array_equal(np.asarray(r["control"])[..., 0], np.asarray(src["mask"]))

    gen.save(tmp_path / "ckpt")
    again = CardiacControlNet.load(tmp_path / "ckpt")
    again.progress = False
    out2 = again.sample(again.condition_plan(allocate(train, TASK, 6, seed=0), train))
    assert [np.asarray(i).tolist() for i in out["image"]] == [
        np.asarray(i).tolist() for i in out2["image"]]


def test_runner_stops_with_one_line_when_the_task_has_no_masks(tmp_path):
    from benchmark.runner import check_required_columns

    rows = cardiac.generate(4, image_size=16, seed=0)
    check_required_columns(CardiacControlNet, rows, TASK)  # the cardiac phantom has masks
    no_mask = rows.map(lambda r, i: {"mask": None if i == 1 else r["mask"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"needs the column 'mask' in every training row; 1 of "
                                         r"4 rows"):
        check_required_columns(CardiacControlNet, no_mask, TASK)
    with pytest.raises(ValueError, match="have none"):
        check_required_columns(CardiacControlNet, rows.remove_columns("mask"), TASK)


def test_cpu_controlnet_trains_half_the_base_steps():
    cpu = PROFILES.get("cpu")
    base = GENERATORS.get("sd-finetune")().resolve(cpu)["steps"]
    r = CardiacControlNet().resolve(cpu)
    assert (r["steps"], r["min_count"]) == (base // 2, 5) and base == 2400
