"""A kill in each stage (fit, sample, evaluate, downstream) at smoke size, then a re-run: the
final record equals an uninterrupted run's, and the killed run left nothing that looks done.

The kill is simulated by raising a ``BaseException`` (as SIGKILL, nothing is caught or cleaned
up by the stage) inside the stage via monkeypatch: during the checkpoint write (fit), after the
synthetic folder is written but before its DONE marker (sample), inside the generation metrics
(evaluate), and when the second downstream classifier starts training (downstream).
"""

from __future__ import annotations

import json

import pytest
from conftest import isolated_cache_dir

import benchmark.downstream.evaluate as downstream_evaluate
import benchmark.runner as runner
from baselines.oversample import Oversample

pytestmark = pytest.mark.slow
TASK = "phantom-cxr-finding"


def without_timings(obj):
    """``obj`` without its wall-clock fields (``time_s``): the only numbers a re-run may change."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k != "time_s"}
    if isinstance(obj, list | tuple):
        return [without_timings(v) for v in obj]
    return obj


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so no handler swallows it."""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return isolated_cache_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRSYNTH_CACHE", cache)
        return runner.run(method="oversample", task=TASK, profile="smoke", seed=0,
                          out=tmp_path_factory.mktemp("reference"), progress=False)


def _kill_in(stage: str, mp: pytest.MonkeyPatch) -> None:
    if stage == "fit":
        original = Oversample.save

        def save(self, directory):
            original(self, directory)
            raise Killed  # the checkpoint is on disk, checkpoint.DONE is not

        mp.setattr(Oversample, "save", save)
    elif stage == "sample":
        original_write = runner.write_image_folder

        def write(*a, **k):
            original_write(*a, **k)
            raise Killed  # synthetic/ is complete on disk, synthetic.DONE is not

        mp.setattr(runner, "write_image_folder", write)
    elif stage == "evaluate":
        def metrics(*a, **k):
            raise Killed

        mp.setattr(runner, "generation_metrics", metrics)
    else:
        original_train = downstream_evaluate.train_classifier
        calls = []

        def train(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise Killed
            return original_train(*a, **k)

        mp.setattr(downstream_evaluate, "train_classifier", train)


@pytest.mark.parametrize("stage", ["fit", "sample", "evaluate", "downstream"])
def test_a_kill_in_a_stage_then_a_rerun_gives_the_uninterrupted_record(
        stage, reference, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRSYNTH_CACHE", cache)
    kw = dict(method="oversample", task=TASK, profile="smoke", seed=0, out=tmp_path,
              progress=False)
    with pytest.MonkeyPatch.context() as mp:
        _kill_in(stage, mp)
        with pytest.raises(Killed):
            runner.run(**kw)
    rdir = runner.run_dir_for(tmp_path, TASK, "oversample", "smoke", 0)
    assert not (rdir / "result.json").exists()
    if stage == "fit":
        assert not (rdir / "checkpoint.DONE").exists()
    if stage == "sample":
        assert (rdir / "synthetic").is_dir() and not (rdir / "synthetic.DONE").exists()
    again = runner.run(**kw)
    assert without_timings(again["metrics"]) == without_timings(reference["metrics"])
    for key in ("config_hash", "dataset_fingerprint", "counts"):
        assert again[key] == reference[key], key
    assert without_timings(json.loads((rdir / "result.json").read_text())["metrics"]) == \
        without_timings(json.loads(json.dumps(reference["metrics"])))
