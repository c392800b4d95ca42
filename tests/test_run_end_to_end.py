"""The whole flow at smoke size: phantom -> generator -> plan -> samples -> FID -> record."""

import json
import math

import pytest
from conftest import isolated_cache_dir

from benchmark.results import validate_record
from benchmark.runner import evaluate_folder, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def oversample_record(out, tmp_path_factory):
    # a module fixture runs before the autouse cache fixture: isolate its caches here too
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRSYNTH_CACHE", isolated_cache_dir(tmp_path_factory))
        return run(method="oversample", task="phantom-cxr-finding", profile="smoke", seed=0,
                   out=out, progress=False)


def test_oversample_smoke_run_writes_a_complete_record(oversample_record):
    rec = json.loads(open(oversample_record["_path"]).read())
    validate_record(rec)
    gen = rec["metrics"]["generation"]
    assert gen["feature_spaces"]["inception"]["extractor"] == "inception-v3-fid"
    fid = gen["fid"]
    assert math.isfinite(fid["value"]) and fid["value"] > 0
    assert fid["n_real"] == 24 and fid["n_synthetic"] == 24
    assert fid["ci_low"] <= fid["value"] <= fid["ci_high"]
    assert fid["ci_resamples"] == gen["settings"]["bootstrap"]["resamples"] == 20
    assert set(gen["fid_by_group"]) == {"sex", "age_group", "sex x age_group"}
    sex = gen["fid_by_group"]["sex"]
    assert set(sex) == {"female", "male"}
    assert sum(g["n_real"] for g in sex.values()) == 24
    assert all(math.isfinite(g["value"]) for g in sex.values())
    assert math.isfinite(gen["fid_variance"]["sex"]["value"])
    assert gen["es_fid"]["sex"]["value"] >= fid["value"]
    for key in ("kid", "precision", "recall", "density", "coverage"):
        assert math.isfinite(gen[key]["value"]) and gen[key]["n_synthetic"] == 24, key
        assert set(gen[key + "_by_group"]) == set(gen["fid_by_group"])
    assert gen["kid"]["subset_size"] == 12 and gen["kid"]["std"] >= 0
    div = gen["diversity"]["synthetic"]
    assert div and all(d["inception_cosine"]["n_images"] >= 1 for d in div.values())
    assert set(gen["diversity"]["unavailable"]) <= {"lpips", "dreamsim"}
    assert rec["counts"]["synthetic"] == rec["counts"]["plan_total"] > 0
    assert rec["packages"]["torch"] and rec["device"]["device"] in ("cpu", "cuda")


def test_rerun_resumes_and_reproduces_the_numbers(out, oversample_record, caplog):
    caplog.set_level("INFO")
    again = run(method="oversample", task="phantom-cxr-finding", profile="smoke", seed=0,
                out=out, progress=False)
    assert "resuming: loading the fitted generator" in caplog.text
    assert "resuming: reading synthetic images" in caplog.text
    assert again["metrics"] == oversample_record["metrics"]
    assert again["config_hash"] == oversample_record["config_hash"]
    assert again["dataset_fingerprint"] == oversample_record["dataset_fingerprint"]


def test_synthetic_folder_records_each_images_source(out, oversample_record):
    import pandas as pd

    rdir = out / "phantom-cxr-finding" / "oversample" / "smoke-seed0"
    meta = pd.read_csv(rdir / "synthetic" / "metadata.csv")
    assert meta["source_id"].notna().all()  # oversample copies real training images
    plan = pd.read_csv(rdir / "plan.csv")
    assert "conditioned" in plan.columns and len(meta) == plan["count"].sum()


def test_evaluate_scores_the_written_folder_like_the_run(out, oversample_record):
    rdir = out / "phantom-cxr-finding" / "oversample" / "smoke-seed0"
    rec = evaluate_folder(task="phantom-cxr-finding", synthetic_dir=rdir / "synthetic",
                          profile="smoke", seed=0, progress=False)
    assert rec["metrics"]["generation"]["fid"] == oversample_record["metrics"]["generation"]["fid"]
    assert (rdir / "evaluation" / "result.json").is_file()


def test_real_only_reports_fid_as_not_applicable(out):
    rec = run(method="real-only", task="phantom-cxr-finding", profile="smoke", seed=0, out=out,
              progress=False)
    fid = rec["metrics"]["generation"]["fid"]
    assert fid["value"] is None and "no synthetic images" in fid["reason"]
    assert rec["counts"]["synthetic"] == 0


def test_run_records_downstream_classifiers_and_fairness(oversample_record):
    ds = oversample_record["metrics"]["downstream"]
    assert set(ds["classifiers"]) == {"real/tiny-resnet", "real+synthetic/tiny-resnet",
                                      "synthetic/tiny-resnet"}
    c = oversample_record["counts"]
    assert ds["counts"]["train_real"] == c["train"] and ds["counts"]["test"] == c["test"]
    assert ds["counts"]["synthetic_used"] == c["synthetic"]
    real = ds["classifiers"]["real/tiny-resnet"]
    assert set(real["fairness"]) == {"sex", "age_group"}
    assert sum(g["n"] for g in real["fairness"]["sex"]["by_group"].values()) == c["test"]
    assert ds["cas"]["tiny-resnet"] == ds["classifiers"]["synthetic/tiny-resnet"]["test"][
        "accuracy"]


def test_evaluate_downstream_reuses_the_real_reference_row(out, oversample_record, tmp_path):
    rdir = out / "phantom-cxr-finding" / "oversample" / "smoke-seed0"
    rec = evaluate_folder(task="phantom-cxr-finding", synthetic_dir=rdir / "synthetic",
                          profile="smoke", seed=0, out=tmp_path, progress=False,
                          downstream=True)
    ds, ref = rec["metrics"]["downstream"], oversample_record["metrics"]["downstream"]
    # same real split, seed and config: the real row comes from the shared cache unchanged
    assert ds["classifiers"]["real/tiny-resnet"] == ref["classifiers"]["real/tiny-resnet"]
    # the same synthetic images give the same classifiers (trained again, seeded)
    for name in ("real+synthetic/tiny-resnet", "synthetic/tiny-resnet"):
        assert {k: v for k, v in ds["classifiers"][name].items() if k != "time_s"} == {
            k: v for k, v in ref["classifiers"][name].items() if k != "time_s"}
    assert ds["cas"] == ref["cas"]
    assert (tmp_path / "downstream").is_dir()


def test_real_only_is_the_reference_row_without_synthetic_classifiers(out, oversample_record):
    rec = run(method="real-only", task="phantom-cxr-finding", profile="smoke", seed=0, out=out,
              progress=False)
    ds = rec["metrics"]["downstream"]
    assert set(ds["classifiers"]) == {"real/tiny-resnet"}
    assert ds["classifiers"]["real/tiny-resnet"] == (
        oversample_record["metrics"]["downstream"]["classifiers"]["real/tiny-resnet"])
    assert ds["cas"] == {"tiny-resnet": None}
    assert set(ds["skipped"]) == {"real+synthetic/tiny-resnet", "synthetic/tiny-resnet"}


def test_a_replaced_synthetic_image_is_found_and_resampled(out, oversample_record, caplog):
    # runs last in this module: it leaves the run folder as it found it
    rdir = out / "phantom-cxr-finding" / "oversample" / "smoke-seed0"
    images = sorted((rdir / "synthetic" / "images").glob("*.png"))
    image, original = images[0], images[0].read_bytes()
    # oversample draws copies of real images: swap in one with other content
    other = next(b for b in (p.read_bytes() for p in images) if b != original)
    image.write_bytes(other)
    caplog.set_level("INFO")
    again = run(method="oversample", task="phantom-cxr-finding", profile="smoke", seed=0,
                out=out, progress=False)
    assert "sampling again" in caplog.text and image.name in caplog.text
    assert "resuming: loading the fitted generator" in caplog.text
    assert image.read_bytes() == original
    assert again["metrics"]["generation"] == oversample_record["metrics"]["generation"]


def test_a_refitted_model_is_never_scored_with_the_old_samples(out, oversample_record, caplog):
    from benchmark.markers import write_marker

    rdir = out / "phantom-cxr-finding" / "oversample" / "smoke-seed0"
    gen_json = rdir / "checkpoint" / "generator.json"
    original = gen_json.read_text()
    caplog.set_level("INFO")
    # a checkpoint changed behind its marker's back is fitted again; the fit reproduces the
    # same files, so the samples certified for those files are still the right ones
    gen_json.write_text(original + "\n")
    run(method="oversample", task="phantom-cxr-finding", profile="smoke", seed=0, out=out,
        progress=False)
    assert "fitting again" in caplog.text and "generator.json changed" in caplog.text
    assert gen_json.read_text() == original
    assert "resuming: reading synthetic images" in caplog.text
    # a model whose files differ from the ones the samples came from: sample again
    caplog.clear()
    gen_json.write_text(original + "\n")
    write_marker(rdir / "checkpoint.DONE", config_hash=oversample_record["config_hash"],
                 output=rdir / "checkpoint")
    run(method="oversample", task="phantom-cxr-finding", profile="smoke", seed=0, out=out,
        progress=False)
    assert "resuming: loading the fitted generator" in caplog.text
    assert "sampling again" in caplog.text and "(checkpoint)" in caplog.text
    gen_json.write_text(original)
