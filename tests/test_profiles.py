"""One resolved profile: per-profile settings live in the Profile, generators resolve their
options against it before config.json is written, and every default is in the config hash;
typed options; the code version and image content in the hash."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re

import datasets
import numpy as np
import pytest
from conftest import make_rows
from PIL import Image

import benchmark.runner as runner
from benchmark import GENERATORS, PROFILES, FitContext, Generator, OptionError
from benchmark.cli import main
from benchmark.generators import _check_generator
from benchmark.metrics.spaces import SpaceExtractors
from benchmark.results import code_version, config_hash, package_versions
from benchmark.schema import FEATURES
from benchmark.settings import DiffusionSettings
from benchmark.tasks import TASKS

TASK = TASKS.get("phantom-cxr-finding")
DIFFUSION_METHODS = ("sd-finetune", "cbrs", "sqrs", "cbdm", "fairdiffusion")


def _hash(method: str, profile, config=None) -> tuple[str, dict]:
    resolved = GENERATORS.get(method)(config).resolve(profile)
    return config_hash(runner.run_config(TASK, method, resolved, profile, 0, None, {})), resolved


def _changed(value):
    """Another value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 + 0.125
    if isinstance(value, str):
        return value + "-changed"
    if value is None:
        return "some/weights"
    raise AssertionError(value)


# -- resolution ------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu", "paper"])
@pytest.mark.parametrize("method", DIFFUSION_METHODS)
def test_resolved_options_are_the_profiles_settings(method, profile):
    prof = PROFILES.get(profile)
    gen = GENERATORS.get(method)()
    resolved = gen.resolve(prof)
    for key, value in prof.diffusion.options().items():
        assert resolved[key] == value, key
    assert resolved["backbone"] == dataclasses.asdict(prof.diffusion.backbone)
    # no placeholders left, except an option whose profile value itself is None
    left = {k for k, v in resolved.items() if v is None}
    assert left <= ({"pretrained"} if prof.diffusion.pretrained is None else set())
    # resolving resolved options changes nothing (the runner resolves once, fit again)
    assert GENERATORS.get(method)(resolved).resolve(prof) == resolved


def test_method_specific_profile_defaults():
    smoke, gpu = PROFILES.get("smoke"), PROFILES.get("gpu")
    cbdm, fair = GENERATORS.get("cbdm"), GENERATORS.get("fairdiffusion")
    assert cbdm().resolve(smoke)["regulariser_fraction"] == 0.25
    assert cbdm().resolve(gpu)["regulariser_fraction"] == 1.0
    assert cbdm({"regulariser_fraction": 0.5}).resolve(smoke)["regulariser_fraction"] == 0.5
    assert fair().resolve(smoke)["window"] == 5
    assert fair().resolve(gpu)["window"] == 30


def test_explicit_options_win_and_backbone_names_a_profile():
    smoke, cpu = PROFILES.get("smoke"), PROFILES.get("cpu")
    gen = GENERATORS.get("sd-finetune")({"steps": 7, "backbone": "cpu"})
    r = gen.resolve(smoke)
    assert r["steps"] == 7
    assert r["lr"] == cpu.diffusion.lr and r["backbone"]["profile"] == "cpu"
    assert r["backbone"]["unet"] == cpu.diffusion.backbone.unet


def test_base_generator_resolve_is_the_identity():
    gen = GENERATORS.get("drop-subgroup")({"group": "female"})
    assert gen.resolve(PROFILES.get("cpu")) == {"attribute": None, "group": "female"}


def test_fit_context_takes_the_profile_object():
    with pytest.raises(TypeError, match="Profile"):
        FitContext(task=TASK, profile="smoke", seed=0)
    assert FitContext(task=TASK, profile=PROFILES.get("smoke"), seed=0).profile.name == "smoke"


# -- every profile default is in the config hash -----------------------------------------

_OPTION_FIELDS = DiffusionSettings.option_names()


@pytest.mark.parametrize("field", _OPTION_FIELDS)
def test_changing_a_diffusion_default_changes_resolved_config_and_hash(field, monkeypatch):
    base = PROFILES.get("smoke")
    h0, _ = _hash("sd-finetune", base)
    new_value = _changed(getattr(base.diffusion, field))
    changed = dataclasses.replace(
        base, diffusion=dataclasses.replace(base.diffusion, **{field: new_value}))
    h1, resolved = _hash("sd-finetune", changed)
    assert resolved[field] == new_value
    assert h1 != h0


@pytest.mark.parametrize("block, field", [
    ("backbone", "resolution"), ("backbone", "max_tokens"), ("backbone", "pixel_factor"),
    ("oracle", "epochs"), ("oracle", "n_train"), ("downstream", "epochs"), (None, "eval_real"),
])
def test_changing_any_other_profile_setting_changes_the_hash(block, field):
    base = PROFILES.get("smoke")
    if block == "backbone":
        spec = dataclasses.replace(base.diffusion.backbone,
                                   **{field: getattr(base.diffusion.backbone, field) + 1})
        changed = dataclasses.replace(base,
                                      diffusion=dataclasses.replace(base.diffusion, backbone=spec))
    elif block is not None:
        sub = getattr(base, block)
        changed = dataclasses.replace(
            base, **{block: dataclasses.replace(sub, **{field: getattr(sub, field) + 1})})
    else:
        changed = dataclasses.replace(base, **{field: getattr(base, field) + 1})
    for method in ("sd-finetune", "oversample"):
        assert _hash(method, changed)[0] != _hash(method, base)[0], (method, block, field)


def test_unet_size_of_a_named_backbone_profile_is_in_the_resolved_config(monkeypatch):
    """A smoke run on the cpu backbone: the cpu spec's sizes are hashed, not just its name."""
    smoke, cpu = PROFILES.get("smoke"), PROFILES.get("cpu")
    h0, _ = _hash("sd-finetune", smoke, {"backbone": "cpu"})
    spec = dataclasses.replace(cpu.diffusion.backbone,
                               unet={**cpu.diffusion.backbone.unet, "layers_per_block": 2})
    monkeypatch.setitem(PROFILES._items, "cpu", dataclasses.replace(
        cpu, diffusion=dataclasses.replace(cpu.diffusion, backbone=spec)))
    h1, resolved = _hash("sd-finetune", smoke, {"backbone": "cpu"})
    assert resolved["backbone"]["unet"]["layers_per_block"] == 2
    assert h1 != h0


def test_config_hash_covers_the_code_version(monkeypatch):
    prof = PROFILES.get("smoke")
    resolved = GENERATORS.get("oversample")().resolve(prof)
    config = runner.run_config(TASK, "oversample", resolved, prof, 0, None, {})
    code = config["code"]
    assert code["version"] == importlib.metadata.version("fairsynth-bench")
    assert code["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", code["git_commit"])
    other = json.loads(json.dumps(config))
    other["code"]["git_commit"] = "0" * 40
    assert config_hash(other) != config_hash(config)


def test_code_version_outside_a_git_checkout(monkeypatch):
    import subprocess

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert code_version.__wrapped__()["git_commit"] is None
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 128, stdout="", stderr="fatal: not a git repository"))
    out = code_version.__wrapped__()
    assert out["git_commit"] is None and out["version"]


def test_package_versions_name_the_diffusion_and_fairness_stack():
    import accelerate
    import diffusers
    import fairlearn
    import timm
    import transformers

    got = package_versions()
    for name, module in (("diffusers", diffusers), ("transformers", transformers),
                         ("accelerate", accelerate), ("timm", timm), ("fairlearn", fairlearn),
                         ("datasets", datasets)):
        assert got[name] == module.__version__, name


# -- typed options ---------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, expected", [
    ("steps", "abc", "expected int"),
    ("steps", 2.5, "expected int"),
    ("steps", True, "expected int"),
    ("guidance_scale", "high", "expected float"),
    ("lr", float("inf"), "finite"),
    ("prompt_style", None, "expected str"),
    ("gradient_checkpointing", 1, "expected bool"),
    ("nosuchkey", 1, "unknown option"),
])
def test_wrong_option_types_are_one_line_errors(key, value, expected):
    with pytest.raises(OptionError, match=expected) as err:
        GENERATORS.get("sd-finetune")({key: value})
    message = str(err.value)
    assert "\n" not in message and key in message and repr(value) in message


def test_a_float_option_takes_an_int():
    gen = GENERATORS.get("sd-finetune")({"lr": 1, "guidance_scale": 3})
    assert gen.config["lr"] == 1.0 and isinstance(gen.config["lr"], float)
    assert isinstance(gen.config["guidance_scale"], float)
    noisy = GENERATORS.get("noisy")({"sigma": 0})
    assert noisy.config["sigma"] == 0.0


def test_registering_a_none_option_without_a_type_fails():
    class Untyped(Generator):
        name = "untyped"
        default_config = {"size": None}

        def fit(self, train, ctx):
            pass

        def sample(self, plan):
            pass

    with pytest.raises(TypeError, match="size"):
        _check_generator("untyped", Untyped)
    Untyped.option_types = {"size": int}
    _check_generator("untyped", Untyped)
    assert Untyped({"size": None}).config == {"size": None}


@pytest.mark.parametrize("argv, named", [
    (["--set", "steps=abc"], ("steps", "'abc'", "int")),
    (["--set", "steps=2.5"], ("steps", "2.5", "int")),
    (["--set", "guidance_scale=high"], ("guidance_scale", "'high'", "float")),
    (["--set", "nosuchkey=1"], ("nosuchkey", "1")),
    (["--set", "steps"], ("steps", "KEY=VALUE")),
    (["--seed", "-3"], ("--seed", "-3")),
])
def test_cli_bad_options_exit_2_with_one_line_before_any_work(argv, named, tmp_path, capsys):
    out = tmp_path / "runs"
    rc = main(["run", "--method", "sd-finetune", "--profile", "smoke", "--out", str(out),
               "--quiet", *argv])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for part in named:
        assert part in lines[0], (part, lines[0])
    assert not out.exists()  # nothing started


def test_cli_string_option_keeps_a_numeric_looking_value():
    from benchmark.cli import build_parser, method_options

    args = build_parser().parse_args(["run", "--method", "drop-subgroup", "--set", "group=1"])
    assert method_options(args, GENERATORS.get("drop-subgroup")) == {"group": "1"}


# -- image fingerprints and resumption -------------------------------------------------------

def test_dataset_fingerprint_hashes_image_content_not_paths(tmp_path):
    from benchmark.data import read_image_folder, write_image_folder

    ds = datasets.Dataset.from_dict(make_rows(6), features=FEATURES)
    write_image_folder(ds, tmp_path / "a", progress=False)
    write_image_folder(ds, tmp_path / "b", progress=False)
    a = read_image_folder(tmp_path / "a", progress=False)
    b = read_image_folder(tmp_path / "b", progress=False)
    assert runner.dataset_fingerprint(a) == runner.dataset_fingerprint(b)
    first = sorted((tmp_path / "b" / "images").iterdir())[0]
    arr = np.asarray(Image.open(first)).copy()
    arr[0, 0] ^= 1
    Image.fromarray(arr).save(first)
    c = read_image_folder(tmp_path / "b", progress=False)
    assert runner.dataset_fingerprint(c) != runner.dataset_fingerprint(a)


def test_evaluate_config_has_the_images_fingerprint_not_the_folder(tmp_path, monkeypatch):
    from benchmark.data import write_image_folder

    rows = make_rows(6)
    ds = datasets.Dataset.from_dict(rows, features=FEATURES)
    for d in ("x", "y"):
        write_image_folder(ds, tmp_path / d / "synthetic", progress=False)
    # score nothing: only the record's config is under test
    monkeypatch.setattr(runner, "feature_extractors",
                        lambda *a, **k: SpaceExtractors(available={}, unavailable={}))
    monkeypatch.setattr(runner, "generation_metrics", lambda *a, **k: {})
    monkeypatch.setattr(runner, "load_task_data", lambda *a, **k: ds)
    recs = [runner.evaluate_folder(task=TASK.name, synthetic_dir=tmp_path / d / "synthetic",
                                   profile="smoke", progress=False) for d in ("x", "y")]
    assert recs[0]["config_hash"] == recs[1]["config_hash"]
    method = recs[0]["config"]["method"]["config"]
    assert "synthetic_dir" not in method and method["synthetic_images"] == 6
    assert str(tmp_path) not in json.dumps(recs[0]["config"])


@pytest.mark.slow
def test_changed_profile_default_is_not_resumed(tmp_path, monkeypatch, caplog):
    """A re-run after a profile default changed has another config hash and refits instead of
    loading the old checkpoint."""
    base = PROFILES.get("smoke")
    quick = dataclasses.replace(base, downstream=dataclasses.replace(base.downstream,
                                                                     enabled=False))
    monkeypatch.setitem(PROFILES._items, "smoke", quick)
    caplog.set_level("INFO")
    kw = dict(method="oversample", task=TASK.name, profile="smoke", seed=0, out=tmp_path,
              progress=False)
    first = runner.run(**kw)  # (an unchanged re-run resumes: tests/test_run_end_to_end.py)
    caplog.clear()
    monkeypatch.setitem(PROFILES._items, "smoke", dataclasses.replace(
        quick, diffusion=dataclasses.replace(quick.diffusion, steps=31)))
    changed = runner.run(**kw)
    assert changed["config_hash"] != first["config_hash"]
    assert "resuming: loading the fitted generator" not in caplog.text
    saved = json.loads((tmp_path / TASK.name / "oversample" / "smoke-seed0" / "config.json")
                       .read_text())
    assert saved["profile"]["diffusion"]["steps"] == 31
    assert config_hash(saved) == changed["config_hash"]
