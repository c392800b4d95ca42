"""Sweeps, submissions, validation and verification on a real smoke-size sweep.

One 3-seed local sweep of ``oversample`` on the chest phantom is the honest submission; the
submitit executor and a sweep killed (SIGKILL) after its first run and re-run must end with
the same aggregate; a corpus of tampered copies of the submission is each rejected with one
line. The smoke profile is admitted by ``validate_submission(allow_smoke=True)``, a switch
of the Python API only (the command line rejects smoke, also tested).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import isolated_cache_dir

from benchmark.markers import file_sha256
from benchmark.submission import make_submission
from benchmark.sweep import SWEEP_FILE, aggregate, sweep
from leaderboard import SELF_REPORTED, VERIFIED, SubmissionError, validate_submission
from leaderboard import verify_submission as verify
from leaderboard.cli import main as leaderboard_main

pytestmark = pytest.mark.slow
TASK, METHOD = "phantom-cxr-finding", "oversample"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return isolated_cache_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def local(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("sweep-local")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRSYNTH_CACHE", cache)
        agg = sweep(methods=[METHOD], tasks=[TASK], seeds=[0, 1, 2], profile="smoke", out=out,
                    progress=False)
    return out, agg


def _first_two_seeds(local) -> dict:
    """The aggregate the local executor gives for seeds 0 and 1 (from its records)."""
    out, _ = local
    records = []
    for seed in (0, 1):
        path = out / TASK / METHOD / f"smoke-seed{seed}" / "result.json"
        records.append({**json.loads(path.read_text()), "_path": str(path)})
    return aggregate(records, out=out)


def test_the_sweep_aggregates_every_seed(local):
    out, agg = local
    assert json.loads((out / SWEEP_FILE).read_text()) == agg
    (entry,) = agg["entries"]
    assert entry["seeds"] == [0, 1, 2] and len({r["config_hash"] for r in entry["runs"]}) == 3
    fid = entry["metrics"]["generation.fid"]
    values = [json.loads((out / r["record"]).read_text())["metrics"]["generation"]["fid"]["value"]
              for r in entry["runs"]]
    assert fid["values"] == values and fid["mean"] == pytest.approx(sum(values) / 3)
    assert fid["ci_low"] < fid["mean"] < fid["ci_high"]


def test_a_finished_sweep_reruns_nothing(local, cache, monkeypatch):
    import benchmark.runner

    out, agg = local
    monkeypatch.setenv("FAIRSYNTH_CACHE", cache)
    monkeypatch.setattr(benchmark.runner, "run", lambda **_: pytest.fail("a finished run ran"))
    again = sweep(methods=[METHOD], tasks=[TASK], seeds=[0, 1, 2], profile="smoke", out=out,
                  progress=False)
    assert again == agg


def test_the_submitit_executor_gives_the_local_executors_results(local, cache, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("FAIRSYNTH_CACHE", cache)
    monkeypatch.chdir(REPO)  # the workers import this checkout's packages
    agg = sweep(methods=[METHOD], tasks=[TASK], seeds=[0, 1], profile="smoke", out=tmp_path,
                executor="submitit-local", parallel=2, progress=False)
    assert list((tmp_path / ".submitit").iterdir())  # the jobs ran through submitit
    assert agg["entries"] == _first_two_seeds(local)["entries"]


def test_a_killed_sweep_rerun_ends_with_the_same_aggregate(local, cache, tmp_path, monkeypatch):
    env = {**os.environ, "FAIRSYNTH_CACHE": cache, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "benchmark", "sweep", "--methods", METHOD, "--tasks", TASK,
            "--seeds", "0", "1", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]
    first = tmp_path / TASK / METHOD / "smoke-seed0" / "result.json"
    second = tmp_path / TASK / METHOD / "smoke-seed1" / "result.json"
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        proc.kill()  # SIGKILL while the second run is under way
    finally:
        proc.kill()
        proc.wait()
    assert first.exists() and not second.exists() and not (tmp_path / SWEEP_FILE).exists()
    monkeypatch.setenv("FAIRSYNTH_CACHE", cache)
    agg = sweep(methods=[METHOD], tasks=[TASK], seeds=[0, 1], profile="smoke", out=tmp_path,
                progress=False)
    assert agg["entries"] == _first_two_seeds(local)["entries"]


# ---- submission, validation, verification ----------------------------------------------------

@pytest.fixture(scope="module")
def honest(local, tmp_path_factory):
    out, _ = local
    sub = tmp_path_factory.mktemp("submissions") / "honest"
    make_submission([out], sub)
    return sub


def test_the_submission_holds_every_seed_with_checksums(honest, local):
    out, _ = local
    manifest = json.loads((honest / "submission.json").read_text())
    assert (manifest["task"], manifest["method"], manifest["profile"]) == (TASK, METHOD, "smoke")
    assert [e["seed"] for e in manifest["entries"]] == [0, 1, 2]
    for e in manifest["entries"]:
        run = out / TASK / METHOD / f"smoke-seed{e['seed']}"
        assert (honest / e["record"]).read_bytes() == (run / "result.json").read_bytes()
        assert e["synthetic"]["metadata_sha256"] == file_sha256(run / "synthetic/metadata.csv")
        name, digest = next(iter(e["synthetic"]["files"].items()))
        assert digest == file_sha256(run / "synthetic" / name)
    rec = json.loads((honest / "records/seed0.json").read_text())
    assert manifest["benchmark"] == rec["benchmark"] == rec["config"]["code"]


def test_an_honest_submission_validates_and_verifies(honest):
    assert sorted(validate_submission(honest, allow_smoke=True)["records"]) == [0, 1, 2]
    result = verify(honest, allow_smoke=True)
    assert result["status"] == VERIFIED, result["reason"]
    assert all(s["compared"] > 100 and not s["differs"] for s in result["seeds"].values())


def test_the_command_line_rejects_the_smoke_profile(honest, capsys):
    assert leaderboard_main(["validate", str(honest)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rejected: ") and len(err.splitlines()) == 1
    assert "profile 'smoke' is for tests" in err


def _edit_json(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _rechecksum(sub: Path) -> None:
    """Update the manifest's record checksums (a tamperer who covers their tracks)."""
    def fix(m):
        for e in m["entries"]:
            e["record_sha256"] = file_sha256(sub / e["record"])
    _edit_json(sub / "submission.json", fix)


def _set(path, value):
    def fn(obj):
        *head, last = path
        for k in head:
            obj = obj[k]
        obj[last] = value
    return fn


def _swap_images(sub: Path) -> None:
    pngs = sorted((sub / "synthetic/seed0").rglob("*.png"))
    a = pngs[0]
    da = a.read_bytes()
    b = next(p for p in pngs if p.read_bytes() != da)  # (oversampling repeats images)
    db = b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


def _drop_seed(sub: Path) -> None:
    _edit_json(sub / "submission.json", lambda m: m["entries"].pop())


def _duplicate_seed(sub: Path) -> None:
    _edit_json(sub / "submission.json", lambda m: m["entries"].__setitem__(2, m["entries"][1]))


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _record(seed: int, fn, *, cover: bool = True):
    def tamper(sub: Path) -> None:
        _edit_json(sub / f"records/seed{seed}.json", fn)
        if cover:
            _rechecksum(sub)
    return tamper


def _drop_downstream(rec):
    del rec["metrics"]["downstream"]


CORPUS = {
    "edited metric": (_record(1, _set(("metrics", "generation", "fid", "value"), 1.0),
                              cover=False), "seed1.json: sha256 does not match the manifest"),
    "edited metric out of range": (_record(1, _set(("metrics", "generation", "precision",
                                                    "value"), 1.5)),
                                   "metric generation.precision = 1.5 is outside its range"),
    "non-finite metric": (_record(0, _set(("metrics", "generation", "fid", "value"), "NaN")),
                          "metric generation.fid is 'NaN'"),
    "swapped image": (_swap_images, "sha256 does not match the manifest"),
    "missing seed": (_drop_seed, "2 seed(s) (0, 1); at least 3 distinct seeds are required"),
    "duplicate seed": (_duplicate_seed, "seed 1 appears more than once"),
    "wrong schema version": (lambda s: _edit_json(s / "submission.json",
                                                  _set(("submission_version",), "0.0.9")),
                             "submission_version '0.0.9'; expected '0.1.0'"),
    "wrong record schema version": (_record(2, _set(("schema_version",), "0.1.0")),
                                    "seed2.json: schema_version '0.1.0'; expected '0.2.0'"),
    "truncated manifest": (lambda s: _truncate(s / "submission.json"),
                           "submission.json: submission.json is not valid JSON"),
    "truncated record": (lambda s: (_truncate(s / "records/seed0.json"), _rechecksum(s)),
                         "seed0.json: the record is not valid JSON"),
    "mixed profiles": (_record(1, _set(("profile",), "cpu")),
                       "mixed profiles: this record has 'cpu', the submission 'smoke'"),
    "mixed benchmark versions": (_record(1, _set(("benchmark", "version"), "9.9.9")),
                                 "mixed benchmark versions"),
    "config hash not its config": (_record(0, _set(("config", "data_seed"), 7)),
                                   "is not the hash of the record's config"),
    "missing headline metric": (_record(0, _drop_downstream),
                                "headline metric downstream.real+synthetic.accuracy of task "
                                f"{TASK} is missing"),
    "manifest schema violation": (lambda s: _edit_json(
        s / "submission.json", _set(("entries", 0, "record_sha256"), "xyz")),
        "does not match the submission schema: $.entries[0].record_sha256"),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_a_tampered_submission_is_rejected_with_one_line(case, honest, tmp_path):
    tamper, expected = CORPUS[case]
    sub = tmp_path / "sub"
    shutil.copytree(honest, sub)
    tamper(sub)
    with pytest.raises(SubmissionError) as err:
        validate_submission(sub, allow_smoke=True)
    line = str(err.value)
    assert "\n" not in line and expected in line, line


def test_an_edited_metric_with_new_checksums_is_only_self_reported(honest, tmp_path):
    sub = tmp_path / "sub"
    shutil.copytree(honest, sub)
    _record(1, _set(("metrics", "generation", "fid", "value"), 1.0))(sub)
    validate_submission(sub, allow_smoke=True)  # internally consistent ...
    result = verify(sub, allow_smoke=True)  # ... but the images do not give that number
    assert result["status"] == SELF_REPORTED
    assert result["seeds"][1]["differs"] == ["generation.fid"]
    assert result["reason"].startswith("seed 1: generation.fid re-scores to ")
    assert not result["seeds"][0]["differs"] and not result["seeds"][2]["differs"]


def test_a_submission_without_images_is_self_reported(local, tmp_path):
    out, _ = local
    make_submission([out], tmp_path / "sub", images=False)
    assert not (tmp_path / "sub" / "synthetic").exists()
    result = verify(tmp_path / "sub", allow_smoke=True)
    assert result["status"] == SELF_REPORTED and "images not included" in result["reason"]


def test_the_site_ranks_verified_entries_and_lists_rejected_ones(honest, tmp_path):
    from leaderboard.site import build_site
    from leaderboard.validate import write_verification

    subs = tmp_path / "submissions"
    shutil.copytree(honest, subs / "oversample-3-seeds")
    write_verification(subs / "oversample-3-seeds", {"status": VERIFIED, "reason": None})
    shutil.copytree(honest, subs / "tampered")
    _drop_seed(subs / "tampered")
    summary = build_site(tmp_path / "site", submissions=subs, allow_smoke=True)
    assert summary["entries"] == 1 and len(summary["rejected"]) == 1
    page = (tmp_path / "site" / summary["pages"][0]).read_text()
    assert f'class="entry" data-method="{METHOD}" data-rank="1"' in page
    assert '<span class="badge verified"' in page
    for png in sorted((tmp_path / "site" / "tasks").glob("*.png")):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((tmp_path / "site" / "tasks").glob("*.png"))) == 5  # one per headline key
    index = (tmp_path / "site" / "index.html").read_text()
    assert "tampered: " in index and "at least 3 distinct seeds" in index
    assert "oversample" in (tmp_path / "site" / "methods" / f"{METHOD}.html").read_text()
    # a manifest edited after verification voids the badge
    _edit_json(subs / "oversample-3-seeds" / "submission.json",
               _set(("created_at",), "2000-01-01T00:00:00+00:00"))
    build_site(tmp_path / "site", submissions=subs, allow_smoke=True)
    assert '<span class="badge self-reported"' in (tmp_path / "site" /
                                                    summary["pages"][0]).read_text()


# ---- run reports and the browser check ------------------------------------------------------

def _runs(local):
    out, _ = local
    return [out / TASK / METHOD / f"smoke-seed{s}" for s in (0, 1)]


def test_every_run_writes_its_report_and_runs_compare_side_by_side(local, cache, tmp_path,
                                                                   monkeypatch):
    from benchmark.cli import main as benchmark_main

    monkeypatch.setenv("FAIRSYNTH_CACHE", cache)
    runs = _runs(local)
    for rdir in runs:  # written by run (at smoke without the t-SNE)
        text = (rdir / "report.html").read_text()
        assert 'id="provenance-table"' in text and "t-SNE not drawn" in text
    assert benchmark_main(["report", *map(str, runs), "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert html.count('<tr class="run">') == 2
    assert html.count('class="grid"') == 2 and html.count('class="plot"') >= 5
    assert "t-SNE of oracle features" not in html  # (the title is drawn inside the PNG)
    rec = json.loads((runs[1] / "result.json").read_text())
    assert rec["config_hash"][:16] in html and rec["dataset_fingerprint"][:16] in html
    acc = rec["metrics"]["downstream"]["classifiers"]["real+synthetic/tiny-resnet"]["test"]
    assert f"<td>{acc['accuracy']:.3f}</td>" in html
    assert html.count("<td class=\"name\">real+synthetic</td>") == 2
    # the generation table always; the held-out, subset-FID and mask sections only for records
    # that have them (tests/test_report_html.py renders records that do)
    assert html.count('<td class="name">fid</td>') == 2 and 'id="generation-table"' in html
    for absent in ('id="held-out"', 'id="subsets-table"', 'id="mask-adherence"'):
        assert absent not in html, absent


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
# appended to a copy of each page: the browser itself says how many images decoded
IMAGE_CHECK = """<script>window.addEventListener("load", () => { const imgs = [...document.images];
const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
const d = document.createElement("div"); d.id = "image-check";
d.textContent = ok + " of " + imgs.length; document.body.appendChild(d); });</script>"""


def _chromium(page: Path, tmp: Path, screenshot: Path) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    checked = page.with_name(f"checked-{page.name}")
    checked.write_text(page.read_text().replace("</body>", IMAGE_CHECK + "</body>"))
    base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}",
            "--virtual-time-budget=10000"]
    dom = subprocess.run([*base, "--dump-dom", checked.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    subprocess.run([*base, "--window-size=1200,1600", f"--screenshot={screenshot}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return dom


def test_the_site_and_a_report_render_in_headless_chromium(honest, local, cache, tmp_path,
                                                           monkeypatch):
    import re

    from benchmark.report.html import write_report
    from leaderboard.site import build_site
    from leaderboard.validate import write_verification

    monkeypatch.setenv("FAIRSYNTH_CACHE", cache)
    subs = tmp_path / "submissions"
    shutil.copytree(honest, subs / "oversample")
    write_verification(subs / "oversample", {"status": VERIFIED, "reason": None})
    summary = build_site(tmp_path / "site", submissions=subs, allow_smoke=True)
    shots = Path(os.environ.get("FAIRSYNTH_SCREENSHOTS", tmp_path))
    dom = _chromium(tmp_path / "site" / summary["pages"][0], tmp_path,
                    shots / "leaderboard_page.png")
    assert len(re.findall(r'<tr class="entry" data-method="oversample" data-rank="1"', dom)) == 1
    assert re.search(r'<div id="image-check">5 of 5</div>', dom), dom[-500:]
    report = write_report(_runs(local)[:1], tmp_path / "report.html")
    dom = _chromium(report, tmp_path, shots / "run_report.png")
    n = len(re.findall(r"<img ", dom))
    assert n >= 6 and f'<div id="image-check">{n} of {n}</div>' in dom
    assert 'id="fairness-table"' in dom and dom.count('<tr class="run">') == 1


def test_an_entry_exports_as_hugging_face_eval_results(honest, local, tmp_path, monkeypatch):
    from leaderboard.export import model_index, push
    from leaderboard.validate import write_verification

    sub = tmp_path / "sub"
    shutil.copytree(honest, sub)
    (entry,) = model_index(sub, allow_smoke=True)
    assert entry["name"] == METHOD
    results = {r["metrics"][0]["type"]: r for r in entry["results"]}
    fid = results["generation.fid"]
    assert fid["dataset"] == {"name": TASK, "type": f"fairsynth-bench/{TASK}",
                              "config": "smoke", "split": "test"}
    _, agg = local
    want = agg["entries"][0]["metrics"]["generation.fid"]
    assert fid["metrics"][0]["value"] == pytest.approx(want["mean"])
    assert fid["metrics"][0]["args"]["ci_high"] == pytest.approx(want["ci_high"])
    assert fid["metrics"][0]["verified"] is False  # not verified yet
    write_verification(sub, {"status": VERIFIED, "reason": None})
    (entry,) = model_index(sub, allow_smoke=True)
    assert all(r["metrics"][0]["verified"] is True for r in entry["results"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"^--push: offline \(HF_HUB_OFFLINE is set\)"):
        push([entry], "someone/fairsynth-results", path_in_repo="entries/x.json")
