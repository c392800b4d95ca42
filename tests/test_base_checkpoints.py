"""Base checkpoints: a method that declares a base gets it fitted once and reused by hash."""

import json

import pytest

from benchmark import GENERATORS, Generator
from benchmark.results import config_hash
from benchmark.runner import run

pytestmark = pytest.mark.slow


class OnTopOfOversample(Generator):
    """A method that continues from the oversample baseline: it samples with the base model
    it was handed (and remembers where that came from)."""

    name = "test-on-top-of-oversample"
    description = "test"
    base = "oversample"
    seen: list = []

    def fit(self, train, ctx):
        assert ctx.base_checkpoint is not None
        assert (ctx.base_checkpoint / "generator.json").is_file()
        type(self).seen.append(ctx.base_checkpoint)
        self._base = GENERATORS.get(self.base).load(ctx.base_checkpoint)

    def sample(self, plan):
        return self._base.sample(plan)

    def downstream_overrides(self):  # a method's own downstream protocol
        return {"reweight": True, "reweight_mode": "sampler"}

    def save(self, directory):
        super().save(directory)
        self._base.save(directory / "base")

    @classmethod
    def load(cls, directory):
        gen = super().load(directory)
        gen._base = GENERATORS.get(cls.base).load(directory / "base")
        return gen


@pytest.fixture
def registered():
    GENERATORS.register(OnTopOfOversample.name, OnTopOfOversample)
    OnTopOfOversample.seen = []
    yield OnTopOfOversample
    GENERATORS._items.pop(OnTopOfOversample.name)


def test_base_is_fitted_once_and_reused_by_its_config_hash(registered, tmp_path, caplog):
    caplog.set_level("INFO")
    kw = dict(task="phantom-cxr-finding", profile="smoke", seed=0, out=tmp_path, progress=False)
    rec = run(method=registered.name, **kw)
    base_dir = tmp_path / "phantom-cxr-finding" / "oversample" / "smoke-seed0"
    base_config = json.loads((base_dir / "config.json").read_text())
    # the base is an ordinary run folder of the base method; the method's config names it
    assert registered.seen == [base_dir / "checkpoint"]
    assert rec["config"]["base"]["method"] == "oversample"
    assert rec["config"]["base"]["config_hash"] == config_hash(base_config)
    assert (base_dir / "checkpoint.DONE").is_file() and rec["timings_s"]["fit_base"] >= 0
    # the method's downstream protocol is in its config and used by its classifiers
    assert rec["config"]["downstream_overrides"] == {"reweight": True,
                                                     "reweight_mode": "sampler"}
    assert rec["metrics"]["downstream"]["config"]["reweight_mode"] == "sampler"
    assert base_config.get("downstream_overrides") is None
    # the base method's own run reuses the fitted base (same resolved config, same hash)
    caplog.clear()
    own = run(method="oversample", **kw)
    assert "resuming: loading the fitted generator" in caplog.text
    assert own["config_hash"] == rec["config"]["base"]["config_hash"]
    # a second run of the method reuses both
    caplog.clear()
    again = run(method=registered.name, **kw)
    assert caplog.text.count("resuming: loading the fitted generator") == 2
    assert again["metrics"]["generation"] == rec["metrics"]["generation"]
    assert len(registered.seen) == 1  # fit was not called again


def test_a_base_run_with_other_options_is_not_clobbered(registered, tmp_path):
    kw = dict(task="phantom-cxr-finding", profile="smoke", seed=0, out=tmp_path, progress=False)
    base_dir = tmp_path / "phantom-cxr-finding" / "oversample" / "smoke-seed0"
    base_dir.mkdir(parents=True)
    (base_dir / "config.json").write_text(json.dumps({"a run": "with other options"}))
    rec = run(method=registered.name, **kw)
    where = registered.seen[0].parent
    assert where != base_dir and where.name.startswith("smoke-seed0-")
    assert where.name.endswith(rec["config"]["base"]["config_hash"][:12])
    assert json.loads((base_dir / "config.json").read_text()) == {"a run": "with other options"}
