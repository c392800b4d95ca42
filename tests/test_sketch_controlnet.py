"""The ``sketch-controlnet`` generator end to end at the smoke profile (registered in-process:
the entry point in pyproject.toml needs a reinstall of the environment)."""

import json

import pandas as pd
import pytest
from conftest import isolated_cache_dir

from benchmark import GENERATORS, OptionError
from methods.sketch_controlnet import SketchControlNet


@pytest.fixture(scope="module")
def registered():
    added = "sketch-controlnet" not in GENERATORS.names()
    if added:
        GENERATORS.register(SketchControlNet.name, SketchControlNet)
    yield SketchControlNet
    if added:
        GENERATORS._items.pop(SketchControlNet.name)


@pytest.fixture(scope="module")
def smoke_run(registered, tmp_path_factory):
    from benchmark.runner import run

    mp = pytest.MonkeyPatch()
    mp.setenv("FAIRSYNTH_CACHE", isolated_cache_dir(tmp_path_factory))
    out = tmp_path_factory.mktemp("runs")
    try:
        rec = run(method="sketch-controlnet", task="phantom-cxr-finding", profile="smoke",
                  seed=0, out=out, progress=False)
    finally:
        mp.undo()
    return rec, out / "phantom-cxr-finding" / "sketch-controlnet" / "smoke-seed0"


def test_smoke_run_is_complete_with_base_allocation_and_stage_times(smoke_run):
    rec, rdir = smoke_run
    assert rec["status"] == "complete" and rec["counts"]["synthetic"] == rec["counts"][
        "plan_total"] > 0
    assert rec["config"]["base"]["method"] == "sd-finetune"
    assert rec["config"]["allocation"] == "majority-score"
    assert rec["allocation"]["groups"] and any(g["selected"] for g in rec["allocation"]["groups"])
    for stage in ("fit_base", "fit", "plan", "sample", "evaluate"):
        assert stage in rec["timings_s"]
    times = rec["method_report"]["timings_s"]
    assert {"triplet_sketches_s", "controlnet_train_s", "plan_sketches_s", "sample_s"} <= set(
        times)
    assert rec["method_report"]["substitutes"]["high_level"] == "layout"


def test_run_folder_keeps_the_sketches_and_the_grid(smoke_run):
    rec, rdir = smoke_run
    meta = pd.read_csv(rdir / "synthetic" / "metadata.csv")
    assert meta["control_path"].notna().all() and meta["source_id"].notna().all()
    assert (rdir / "synthetic" / meta["control_path"].iloc[0]).is_file()
    plan_dir = rdir / "work" / "sketches" / "plan"
    n = rec["method_report"]["sketches_per_image"]
    pngs, svgs = sorted(plan_dir.glob("*.png")), sorted(plan_dir.glob("*.svg"))
    assert len(pngs) == len(svgs) == rec["method_report"]["plan_source_images"] * n
    assert list((rdir / "work" / "sketches" / "triplets").glob("*.svg"))
    assert (rdir / "sketch_grid.png").is_file()
    # a source image's synthetic images cycle through its n (different) sketches
    import hashlib

    cycled = 0
    for _, group in meta.groupby("source_id"):
        digests = {hashlib.sha256((rdir / "synthetic" / p).read_bytes()).hexdigest()
                   for p in group["control_path"]}
        assert len(digests) == min(len(group), n)
        cycled += len(group) >= 2
    assert cycled  # the smoke plan has sources used more than once


def test_rerun_resumes_from_the_checkpoint_and_samples(registered, smoke_run, caplog):
    from benchmark.runner import run

    rec, rdir = smoke_run
    caplog.set_level("INFO")
    again = run(method="sketch-controlnet", task="phantom-cxr-finding", profile="smoke",
                seed=0, out=rdir.parents[2], progress=False)
    assert "resuming: loading the fitted generator" in caplog.text
    assert "sketches: reusing" in caplog.text  # not optimised again
    assert "resuming: reading synthetic images" in caplog.text  # the same sketches again
    assert again["config_hash"] == rec["config_hash"]
    assert json.dumps(again["metrics"]["generation"], sort_keys=True, default=str) == \
        json.dumps(rec["metrics"]["generation"], sort_keys=True, default=str)


def test_bad_options_are_one_line_errors(registered):
    with pytest.raises(OptionError, match="low_level='l2'"):
        SketchControlNet({"low_level": "l2"})
    with pytest.raises(OptionError, match="alpha=1.5"):
        SketchControlNet({"alpha": 1.5})
    with pytest.raises(OptionError, match="triplets=0"):
        SketchControlNet({"triplets": 0})


def test_profile_defaults_hold_the_papers_preset():
    from benchmark import PROFILES

    r = SketchControlNet().resolve(PROFILES.get("paper"))
    assert (r["triplets"], r["lr"], r["batch_size"], r["steps"]) == (10, 1e-5, 1, 2550)
    assert r["start_iteration"] == 100
    # cpu: the ControlNet trains half the profile's steps; its base keeps the profile's
    cpu = PROFILES.get("cpu")
    base = GENERATORS.get("sd-finetune")().resolve(cpu)["steps"]
    assert SketchControlNet().resolve(cpu)["steps"] == 1200 == base // 2


def test_plan_sketches_are_cached_by_all_they_depend_on(tmp_path, monkeypatch):
    import numpy as np

    from methods.sketch_controlnet import generator as g
    from methods.sketch_controlnet.sketch import SketchConfig

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(2)]
    cfg = SketchConfig(strokes=4, iterations=2, canvas=16, n=2)
    first = g.cached_sketches(tmp_path, images, cfg, seed=0, device="cpu")
    real = g.extract_sketches
    monkeypatch.setattr(g, "extract_sketches", lambda *a, **k: pytest.fail("recomputed"))
    again = g.cached_sketches(tmp_path, images, cfg, seed=0, device="cpu")
    assert all(np.array_equal(a.points, b.points) for x, y in zip(first, again, strict=True)
               for a, b in zip(x, y, strict=True))
    calls = []
    monkeypatch.setattr(g, "extract_sketches", lambda *a, **k: calls.append(1) or real(*a, **k))
    g.cached_sketches(tmp_path, images, cfg, seed=1, device="cpu")  # another seed
    images[1][0, 0] ^= 1  # another pixel
    g.cached_sketches(tmp_path, images, cfg, seed=1, device="cpu")
    assert len(calls) == 2
