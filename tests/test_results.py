import json

import pytest

from benchmark.results import (
    SCHEMA_VERSION,
    config_hash,
    make_record,
    validate_record,
    write_json_atomic,
)


def _fields(**over):
    config = {"task": {"name": "t"}, "method": {"name": "m", "config": {}},
              "profile": {"name": "smoke"}, "seed": 1,
              "code": {"version": "0.1.0", "git_commit": None}}
    base = dict(task="t", method="m", profile="smoke", seed=1, config=config,
                config_hash=config_hash(config), dataset_fingerprint="ab" * 32, packages={},
                device={"device": "cpu"}, timings_s={}, counts={},
                metrics={"generation": {}})
    base.update(over)
    return base


def test_config_hash_ignores_key_order_but_not_values():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_record_round_trip_and_validation(tmp_path):
    rec = make_record(**_fields())
    assert rec["schema_version"] == SCHEMA_VERSION and rec["status"] == "complete"
    path = write_json_atomic(tmp_path / "r" / "result.json", rec)
    validate_record(json.loads(path.read_text()))
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others: records are shared


def test_record_with_a_tampered_config_is_rejected():
    rec = make_record(**_fields())
    rec["config"]["seed"] = 2
    with pytest.raises(ValueError, match="config_hash"):
        validate_record(rec)
    with pytest.raises(ValueError, match="missing key"):
        make_record(**{k: v for k, v in _fields().items() if k != "metrics"})


def test_atomic_write_leaves_old_file_when_serialisation_fails(tmp_path):
    path = write_json_atomic(tmp_path / "result.json", {"ok": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"bad": float("nan")})  # NaN is not JSON
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_record_schema_violations_are_named_with_their_json_path():
    rec = make_record(**_fields())
    assert rec["benchmark"]["version"]  # the benchmark version is in every record
    for path, value, where in ((("seed",), -1, "$.seed"),
                               (("dataset_fingerprint",), "abc", "$.dataset_fingerprint"),
                               (("counts", "test"), 1.5, "$.counts.test"),
                               (("metrics",), [], "$.metrics")):
        bad = json.loads(json.dumps(rec))
        target = bad
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
        with pytest.raises(ValueError, match=rf"schema: \{where}"):
            validate_record(bad)
    with pytest.raises(ValueError, match="schema_version '0.1.0'; expected"):
        validate_record({**rec, "schema_version": "0.1.0"})
