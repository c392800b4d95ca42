"""FairGen: preference files, the simulated physician, the method's options and stages."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from conftest import make_rows

from benchmark import GENERATORS
from benchmark.generators import FitContext
from benchmark.preferences import (
    PreferenceFileError,
    PreferencePair,
    SimulatedPhysician,
    pair_by_scores,
    preference_summary,
    read_preferences,
    write_preferences,
)
from benchmark.profiles import PROFILES
from benchmark.schema import FEATURES
from benchmark.tasks import TASKS
from methods.fairgen import FairGen, FairGenAsCoded

for _cls in (FairGen, FairGenAsCoded):  # the shared venv may not list the entry points yet
    if _cls.name not in GENERATORS.names():
        GENERATORS.register(_cls.name, _cls)


def _pngs(tmp_path, n=2):
    from PIL import Image

    out = []
    for i in range(n):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(p)
        out.append(p)
    return out


def test_read_and_write_preferences_round_trip(tmp_path):
    a, b = _pngs(tmp_path)
    f = tmp_path / "physician_preferences.jsonl"
    f.write_text(json.dumps({"text": "female Edema", "image_w": "im0.png",
                             "image_l": str(b)}) + "\n\n")
    pairs = read_preferences(tmp_path)  # a folder: finds the code's file name
    assert len(pairs) == 1 and pairs[0].image_w == str(tmp_path / "im0.png")
    out = write_preferences(pairs, tmp_path / "preferences.jsonl")
    again = read_preferences(out)
    assert again[0].text == "female Edema" and again[0].image_l == str(b)
    assert json.loads(out.read_text())["image_w"] in ("im0.png", str(a))


@pytest.mark.parametrize("line, message", [
    ("not json", r"prefs.jsonl:2: not JSON"),
    ("[1, 2]", r"prefs.jsonl:2: expected a JSON object"),
    ('{"text": "x", "image_w": "im0.png"}', r"prefs.jsonl:2: key\(s\) image_l missing"),
    ('{"text": "x", "image_w": "im0.png", "image_l": "gone.png"}', r":2: image_l 'gone.png'"),
])
def test_bad_preference_lines_name_the_line(tmp_path, line, message):
    _pngs(tmp_path)
    f = tmp_path / "prefs.jsonl"
    good = json.dumps({"text": "x", "image_w": "im0.png", "image_l": "im1.png"})
    f.write_text(good + "\n" + line + "\n")
    with pytest.raises(PreferenceFileError, match=message):
        read_preferences(f)
    with pytest.raises(PreferenceFileError, match="does not exist"):
        read_preferences(tmp_path / "nothing.jsonl")


def test_pair_by_scores_drops_ties_and_orders_by_gap():
    pairs, ties = pair_by_scores([1, 2, 0, 2])
    # ties: (1, 3); the gap-2 pairs first
    assert ties == 1
    assert pairs[:2] == [(1, 2), (3, 2)]
    assert set(pairs) == {(1, 2), (3, 2), (0, 2), (1, 0), (3, 0)}
    assert pair_by_scores([1, 1, 1]) == ([], 3)
    assert len(pair_by_scores([2, 1, 0], max_pairs=1)[0]) == 1


def test_pair_by_scores_breaks_ties_by_confidence_after_the_score_gap():
    # scores 1, 1, 0, 1 and p(y|x) 0.2, 0.7, 0.9, 0.2: by hand, score gap 1 first (0>2, 1>2,
    # 3>2 with b gaps -0.7, -0.2, -0.7: 1>2 before 0>2 and 3>2), then the ties of score 1
    # broken by b (1>0 gap 0.5, 1>3 gap 0.5); 0 vs 3 equal in both: the one tie
    pairs, ties = pair_by_scores([1, 1, 0, 1], tie_break=[0.2, 0.7, 0.9, 0.2])
    assert ties == 1
    assert pairs == [(1, 2), (0, 2), (3, 2), (1, 0), (1, 3)]
    assert pair_by_scores([1, 1], tie_break=[0.3, 0.3]) == ([], 1)
    with pytest.raises(ValueError, match="tie_break has"):
        pair_by_scores([1, 1], tie_break=[0.3])


def test_tie_break_option_defaults_per_profile_and_rejects_unknown_values():
    assert FairGen().resolve(PROFILES.get("smoke"))["tie_break"] == "confidence"
    assert FairGen().resolve(PROFILES.get("cpu"))["tie_break"] == "drop"
    assert FairGen({"tie_break": "drop"}).resolve(PROFILES.get("smoke"))["tie_break"] == "drop"
    with pytest.raises(ValueError, match="tie_break must be one of drop, confidence"):
        FairGen({"tie_break": "coin"})


def test_simulated_physician_prefers_the_adherent_image(smoke_skin_oracle):
    from benchmark.oracle import heldout_population

    oracle = smoke_skin_oracle
    images, truths = heldout_population(oracle, 60, seed=5)
    phys = SimulatedPhysician(oracle)
    right = phys.judge(list(images), [dict(t) for t in truths])
    # the same images asked for as another finding: never the requested one unless misread
    findings = oracle.heads["finding"]
    wrong_req = [{**t, "finding": findings[(findings.index(t["finding"]) + 1) % len(findings)]}
                 for t in truths]
    wrong = phys.judge(list(images), wrong_req)
    assert right.scores.mean() > wrong.scores.mean() + 0.5
    wins = sum(pair_by_scores([right.scores[i], wrong.scores[i]])[0] == [(0, 1)]
               for i in range(len(truths)))
    assert wins >= 0.6 * len(truths)
    # p(requested finding | x) is the oracle's softmax entry of that finding, by hand
    proba = oracle.predict_proba(list(images[:5]))["finding"]
    expect = [proba[i, findings.index(t["finding"])] for i, t in enumerate(truths[:5])]
    np.testing.assert_allclose(right.finding_proba[:5], expect, rtol=1e-5)
    assert (right.finding_proba[right.finding_ok] >= 1 / len(findings)).all()
    s = preference_summary([PreferencePair("p", "w", "l", {
        "finding_ok_w": True, "finding_ok_l": False, "condition_ok_w": True,
        "condition_ok_l": False})], ties=2)
    assert s["finding_adherence_winners"] == 1.0 and s["finding_adherence_losers"] == 0.0
    assert s["ties_dropped"] == 2


def test_fairgen_runs_use_its_downstream_reweighting():
    assert FairGen().downstream_overrides() == {"reweight": True, "reweight_mode": "sampler"}
    assert FairGen({"downstream_reweight": "loss"}).downstream_overrides()["reweight_mode"] == (
        "loss")
    assert FairGen({"downstream_reweight": "none"}).downstream_overrides() == {}
    with pytest.raises(ValueError, match="downstream_reweight must be"):
        FairGen({"downstream_reweight": "sometimes"})


def test_options_and_variants():
    assert GENERATORS.get("fairgen") is FairGen
    with pytest.raises(ValueError, match="dpo must be one of"):
        FairGen({"dpo": "sometimes"})
    with pytest.raises(ValueError, match="option cbsq='yes' is str; expected bool"):
        FairGen({"cbsq": "yes"})
    r = FairGen().resolve(PROFILES.get("smoke"))
    assert (r["dpo"], r["dpo_beta"], r["gradient_aware"], r["cbsq_other"]) == (
        "diffusion-dpo", 500.0, True, "distinct")
    assert r["dpo_steps"] is not None and r["steps"] is not None  # profile defaults
    # DPO strength per profile (the card's measurement); the paper keeps the published beta
    # and the stack's lr; the as-coded loss keeps the code's 0.5 everywhere; an explicit
    # value wins; dpo=none has no beta
    assert r["dpo_lr"] == pytest.approx(r["lr"] / 10)
    p = FairGen().resolve(PROFILES.get("paper"))
    assert (p["dpo_beta"], p["dpo_lr"]) == (5000.0, p["lr"])
    c = FairGen().resolve(PROFILES.get("cpu"))  # measured on the cpu (x0) base: see the card
    assert (c["dpo_beta"], c["dpo_lr"]) == (5000.0, 1e-5)
    assert FairGenAsCoded().resolve(PROFILES.get("smoke"))["dpo_beta"] == 0.5
    assert FairGen({"dpo": "as-coded"}).resolve(PROFILES.get("cpu"))["dpo_beta"] == 0.5
    assert FairGen({"dpo_beta": 7.0}).resolve(PROFILES.get("cpu"))["dpo_beta"] == 7.0
    assert FairGen({"dpo": "none"}).resolve(PROFILES.get("cpu"))["dpo_beta"] is None
    assert FairGen(r).resolve(PROFILES.get("smoke")) == r
    c = FairGenAsCoded().resolve(PROFILES.get("paper"))
    assert (c["dpo"], c["dpo_beta"], c["gradient_aware"], c["cbsq_other"],
            c["prompt_style"], c["lr"], c["steps"]) == (
        "as-coded", 0.5, False, "uniform", "fairgen-code", 1e-5, 15000)


def test_real_task_without_preferences_says_what_file_is_needed():
    with pytest.raises(ValueError, match=r"not a phantom.*preferences=PATH.*image_w"):
        FairGen()._oracle_or_error(TASKS.get("fairgen-chest"), PROFILES.get("smoke"))


@pytest.mark.parametrize("dpo", ["diffusion-dpo", "as-coded"])
def test_fit_with_a_user_preference_file_and_resume(tmp_path, dpo):
    task = TASKS.get("phantom-cxr-finding")
    ds = datasets.Dataset.from_dict(make_rows(24, size=32), features=FEATURES)
    pref_dir = tmp_path / "prefs"
    pref_dir.mkdir()
    ims = ds["image"]
    for i in range(4):
        ims[i].save(pref_dir / f"{i}.png")
    lines = [json.dumps({"text": "female, pneumonia", "image_w": "0.png", "image_l": "1.png"}),
             json.dumps({"text": "male, no finding", "image_w": "2.png", "image_l": "3.png"})]
    (pref_dir / "preferences.jsonl").write_text("\n".join(lines) + "\n")
    opts = {"dpo": dpo, "preferences": str(pref_dir), "steps": 3, "dpo_steps": 2,
            "dpo_batch_size": 2, "checkpoint_every": 1}
    gen = FairGen(opts)
    gen.progress = False
    ctx = FitContext(task=task, profile=PROFILES.get("smoke"), seed=0, work_dir=tmp_path / "work")
    gen.fit(ds, ctx)
    assert set(gen.report()["stage_seconds"]) == {"base", "preferences", "dpo"}
    log = (tmp_path / "work" / "dpo" / "loss_log.csv").read_text()
    assert "pref_loss" in log and len(log.strip().splitlines()) == 3
    assert "pref_implicit_acc" in log.splitlines()[0].split(",")  # every run logs it
    ev = gen.report()["dpo_eval"]  # and the stage's end on every pair
    assert ev["n_pairs"] == 2 and ev["implicit_acc"] in (0.0, 0.5, 1.0)
    assert ("dpo_loss" in ev) == (dpo == "diffusion-dpo")
    first = {k: v.clone() for k, v in gen.backbone.unet.state_dict().items()}
    again = FairGen(opts)  # a second fit resumes both finished stages: same weights
    again.progress = False
    again.fit(ds, ctx)
    for k, v in again.backbone.unet.state_dict().items():
        assert (v == first[k]).all()


def test_the_printed_summary_shows_the_pairs_adherence():
    from benchmark.report.summary import method_report_lines

    lines = method_report_lines({
        "stage_seconds": {"base": 3.8234, "dpo": 1.0},
        "preferences": {"n_pairs": 6, "finding_adherence_winners": 1.0,
                        "finding_adherence_losers": 0.0, "source": "simulated physician"},
        "dpo_eval": {"implicit_acc": 0.8333333, "nested": {"ok": True, "x": None}},
        "note": "text"})
    assert lines == [
        "  method report",
        "    stage_seconds: base 3.823, dpo 1",
        "    preferences: n_pairs 6, finding_adherence_winners 1, finding_adherence_losers 0, "
        "source simulated physician",
        "    dpo_eval: implicit_acc 0.8333, nested.ok true, nested.x n/a",
        "    note: text"]
