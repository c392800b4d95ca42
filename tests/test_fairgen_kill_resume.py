"""A fairgen run killed in its preference (DPO) stage, then rerun, at smoke size: the rerun
resumes that stage from its last checkpoint, does not retrain the base stage or regenerate the
candidates and pairs, and its record equals an uninterrupted run's.

The kill is a ``BaseException`` raised from the preference stage's ``on_step_end`` hook in
its third optimizer step (as SIGKILL there: after the checkpoint of step 2 is on disk, before
step 3's). ``checkpoint_every=1`` so the preference stage has a checkpoint mid-stage (the
smoke default writes one only at its end).
"""

from __future__ import annotations

import json

import pytest
from conftest import isolated_cache_dir
from test_kill_resume import Killed, without_timings

import benchmark.runner as runner
import methods.fairgen.generator as fairgen_generator
from benchmark import GENERATORS
from benchmark.diffusion import DiffusionTrainer
from methods.fairgen import FairGen, FairGenAsCoded
from methods.fairgen.stages import PreferenceStage

for _cls in (FairGen, FairGenAsCoded):  # the shared venv may not list the entry points yet
    if _cls.name not in GENERATORS.names():
        GENERATORS.register(_cls.name, _cls)

pytestmark = pytest.mark.slow
TASK = "phantom-cxr-fairgen"
OPTIONS = {"checkpoint_every": 1}
KILL_AT_STEP = 2  # 0-based: steps 0 and 1 done and checkpointed (checkpoint-0000002)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return isolated_cache_dir(tmp_path_factory)


def _run(out, **kw):
    return runner.run(method="fairgen", task=TASK, profile="smoke", seed=0, out=out,
                      progress=False, method_config=dict(OPTIONS), **kw)


def _method_report(record):
    return {k: v for k, v in record["method_report"].items() if k != "stage_seconds"}


def test_a_kill_in_the_preference_stage_resumes_from_its_last_checkpoint(
        cache, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSYNTH_CACHE", cache)
    reference = _run(tmp_path / "reference")

    out = tmp_path / "killed"
    with pytest.MonkeyPatch.context() as mp:
        original = PreferenceStage.on_step_end

        def on_step_end(self, step, outputs):
            original(self, step, outputs)
            if step == KILL_AT_STEP:
                raise Killed

        mp.setattr(PreferenceStage, "on_step_end", on_step_end)
        with pytest.raises(Killed):
            _run(out)
    rdir = runner.run_dir_for(out, TASK, "fairgen", "smoke", 0)
    work = rdir / "work"
    assert not (rdir / "result.json").exists() and not (rdir / "checkpoint.DONE").exists()
    assert (work / "preferences.DONE").is_file()
    dpo_ckpts = sorted(p.name for p in (work / "dpo" / "checkpoints").iterdir())
    assert dpo_ckpts[-1] == f"checkpoint-{KILL_AT_STEP:07d}"
    pair_file = work / "preferences" / "preferences.jsonl"
    pairs_before = (pair_file.read_bytes(), pair_file.stat().st_mtime_ns)
    base_log = (work / "base" / "loss_log.csv").read_bytes()

    # the rerun: record which steps each training stage runs, and any candidate sampling
    spans, sampled = {}, []
    original_train = DiffusionTrainer.train

    def train(self, **kw):
        result = original_train(self, **kw)
        spans[self.work_dir.name] = (result.start_step, result.end_step)
        return result

    def no_sampling(*a, **k):
        sampled.append(1)
        raise AssertionError("the rerun regenerated the preference candidates")

    monkeypatch.setattr(DiffusionTrainer, "train", train)
    monkeypatch.setattr(fairgen_generator, "sample_images", no_sampling)
    again = _run(out)

    resolved = json.loads((rdir / "config.json").read_text())["method"]["config"]
    assert spans["base"] == (resolved["steps"], resolved["steps"]), (
        f"the base stage trained again: steps {spans['base']}")
    assert spans["dpo"][0] == KILL_AT_STEP, f"the preference stage restarted: {spans['dpo']}"
    assert not sampled
    assert (pair_file.read_bytes(), pair_file.stat().st_mtime_ns) == pairs_before
    assert (work / "base" / "loss_log.csv").read_bytes() == base_log

    # the same record as the uninterrupted run (wall-clock fields aside)
    assert without_timings(again["metrics"]) == without_timings(reference["metrics"])
    assert _method_report(again) == _method_report(reference)
    for key in ("config_hash", "dataset_fingerprint", "counts"):
        assert again[key] == reference[key], key
    on_disk = json.loads((rdir / "result.json").read_text())
    assert without_timings(on_disk["metrics"]) == without_timings(
        json.loads(json.dumps(reference["metrics"])))
    # the record carries the pairs' summary; every pair's winner is above its loser in
    # (score, p(y | x)) (smoke breaks score ties by confidence), so winners' adherence is not
    # below the losers' (at smoke the base model is noise: equal is the usual case)
    prefs = again["method_report"]["preferences"]
    lines = [json.loads(x) for x in pair_file.read_text().splitlines()]
    assert prefs["n_pairs"] == len(lines) > 0 and prefs["tie_break"] == "confidence"
    assert all((p["score_w"], p["p_finding_w"]) > (p["score_l"], p["p_finding_l"])
               for p in lines)
    assert prefs["finding_adherence_winners"] >= prefs["finding_adherence_losers"]
    assert 0.0 <= again["method_report"]["dpo_eval"]["implicit_acc"] <= 1.0
