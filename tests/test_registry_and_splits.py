import pytest

from benchmark.data.splits import assign_splits, split_of
from benchmark.registry import PluginLoadError, Registry, UnknownNameError


def test_registry_rejects_bad_and_duplicate_names():
    reg: Registry[int] = Registry("thing")
    reg.register("a-1", 1)
    for bad in ("A", "has space", "a/b", "", "-x"):
        with pytest.raises(ValueError, match="invalid thing name"):
            reg.register(bad, 2)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a-1", 3)
    with pytest.raises(UnknownNameError) as err:
        reg.get("b")
    assert str(err.value) == "unknown thing 'b'; valid: a-1"


def test_a_broken_plugin_is_named_and_does_not_hide_the_others(monkeypatch, caplog):
    from importlib.metadata import EntryPoint

    import benchmark.registry as registry

    eps = [EntryPoint("broken", "no_such_module_for_the_test:Thing", "g"),
           EntryPoint("good", "json:dumps", "g")]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    reg: Registry[object] = Registry("method", entry_point_group="g")
    import json

    assert reg.get("good") is json.dumps and reg.names() == ["good"]
    with pytest.raises(PluginLoadError) as err:
        reg.get("broken")
    assert str(err.value).startswith("method 'broken' is installed but failed to load: ")
    assert "ModuleNotFoundError" in str(err.value) and "\n" not in str(err.value)
    assert "failed to load and is left out" in caplog.text
    with pytest.raises(UnknownNameError, match="valid: good"):
        reg.get("other")


def test_splits_are_patient_level_deterministic_and_order_free():
    ids = [f"patient{i}" for i in range(5000)]
    a = assign_splits(ids)
    b = assign_splits(list(reversed(ids)))[::-1]
    assert a == b
    # fractions close to 70/10/20 (binomial sd ~0.7% at n=5000)
    for name, frac in {"train": 0.7, "val": 0.1, "test": 0.2}.items():
        assert abs(a.count(name) / len(ids) - frac) < 0.03
    # a different salt gives a different split
    assert assign_splits(ids, salt="other") != a


def test_split_fractions_are_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        split_of("p", fractions={"train": 0.5, "test": 0.2})
    with pytest.raises(ValueError, match="unknown split"):
        split_of("p", fractions={"train": 0.5, "holdout": 0.5})
    assert split_of("p", fractions={"train": 1.0}) == "train"
