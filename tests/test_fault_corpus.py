"""The fault corpus: malformed inputs and damaged run folders, generated at test time.

Every bad input must end with exit status 2 and ONE ``error:`` line on stderr that names the
file / row / column / option, no traceback, and nothing written that looks complete (no
``result.json``). Damaged run folders (the slow part at the end) must be named in the log and
the stage that produced the damaged file redone, giving the record of an intact run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.data.io import read_image_folder

TASK = "phantom-cxr-finding"
HEADER = ["path", "finding", "sex", "age"]


def _image(path: Path, seed: int = 0, size: tuple[int, int] = (32, 32), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)


def make_folder(root: Path, n: int = 4, rows: list[list[str]] | None = None,
                header: list[str] | None = None) -> Path:
    """A valid image folder (``n`` 32x32 PNGs + metadata.csv) to be broken by one change."""
    d = root / "syn"
    for i in range(n):
        _image(d / "images" / f"{i}.png", seed=i)
    if rows is None:
        rows = [[f"images/{i}.png", "edema" if i % 2 else "no_finding",
                 "female" if i % 2 else "male", str(30 + i)] for i in range(n)]
    pd.DataFrame(rows, columns=header or HEADER).to_csv(d / "metadata.csv", index=False)
    return d


def set_cell(d: Path, row: int, column: str, value: str) -> None:
    df = pd.read_csv(d / "metadata.csv", dtype=str, keep_default_na=False)
    df.loc[row, column] = value
    df.to_csv(d / "metadata.csv", index=False)


def assert_one_error(capsys, argv: list[str], *needles: str, root: Path | None = None) -> str:
    rc = main(argv)
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert rc == 2, (rc, cap.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    assert "Traceback" not in cap.err + cap.out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    if root is not None:  # nothing that looks finished
        assert not list(root.rglob("result.json")) and not list(root.rglob("*.DONE"))
        assert not list(root.rglob(".*.tmp*"))
    return lines[0]


def evaluate(d: Path, *extra: str) -> list[str]:
    return ["evaluate", "--synthetic", str(d), "--task", TASK, "--profile", "smoke", "--quiet",
            *extra]


# --------------------------------------------------------------------- the metadata table


def test_metadata_missing(tmp_path, capsys):
    d = make_folder(tmp_path)
    (d / "metadata.csv").unlink()
    assert_one_error(capsys, evaluate(d), "metadata.csv is missing", root=tmp_path)


def test_metadata_empty_file(tmp_path, capsys):
    d = make_folder(tmp_path)
    (d / "metadata.csv").write_text("")
    assert_one_error(capsys, evaluate(d), "metadata.csv is empty", root=tmp_path)


def test_metadata_header_only(tmp_path, capsys):
    d = make_folder(tmp_path)
    (d / "metadata.csv").write_text(",".join(HEADER) + "\n")
    assert_one_error(capsys, evaluate(d), "metadata.csv", "no rows", root=tmp_path)


def test_metadata_missing_column(tmp_path, capsys):
    d = make_folder(tmp_path, rows=[["images/0.png", "male", "30"]],
                    header=["path", "sex", "age"])
    assert_one_error(capsys, evaluate(d), "missing column(s) finding", root=tmp_path)


def test_duplicate_column_names(tmp_path, capsys):
    d = make_folder(tmp_path, n=1, rows=[["images/0.png", "edema", "male", "30", "70"]],
                    header=[*HEADER, "age"])
    assert_one_error(capsys, evaluate(d), "column 'age' occurs more than once", root=tmp_path)


def test_not_utf8(tmp_path, capsys):
    d = make_folder(tmp_path)
    (d / "metadata.csv").write_bytes(b"path,finding,sex,age\nimages/0.png,edema,m\xe4le,3\xff\n")
    assert_one_error(capsys, evaluate(d), "metadata.csv", root=tmp_path)


# --------------------------------------------------------------------- paths


def test_path_with_dotdot(tmp_path, capsys):
    d = make_folder(tmp_path)
    _image(tmp_path / "outside.png")
    set_cell(d, 1, "path", "../outside.png")
    assert_one_error(capsys, evaluate(d), "row 3", "'../outside.png'", "leaves", root=tmp_path)


def test_path_with_dotdot_inside_a_folder(tmp_path, capsys):
    d = make_folder(tmp_path)
    _image(tmp_path / "outside.png")
    set_cell(d, 0, "path", "images/../../outside.png")
    assert_one_error(capsys, evaluate(d), "row 2", "leaves", root=tmp_path)


def test_absolute_path(tmp_path, capsys):
    d = make_folder(tmp_path)
    _image(tmp_path / "outside.png")
    set_cell(d, 0, "path", str(tmp_path / "outside.png"))
    assert_one_error(capsys, evaluate(d), "row 2", "is absolute", root=tmp_path)


def test_symlinked_file_pointing_outside(tmp_path, capsys):
    d = make_folder(tmp_path)
    _image(tmp_path / "outside.png")
    (d / "images" / "link.png").symlink_to(tmp_path / "outside.png")
    set_cell(d, 2, "path", "images/link.png")
    assert_one_error(capsys, evaluate(d), "row 4", "outside", "symlink", root=tmp_path)


def test_symlinked_folder_pointing_outside(tmp_path, capsys):
    d = make_folder(tmp_path)
    _image(tmp_path / "elsewhere" / "0.png")
    (d / "more").symlink_to(tmp_path / "elsewhere")
    set_cell(d, 0, "path", "more/0.png")
    assert_one_error(capsys, evaluate(d), "row 2", "outside", root=tmp_path)


def test_symlink_inside_the_root_is_fine(tmp_path):
    d = make_folder(tmp_path)
    (d / "images" / "alias.png").unlink(missing_ok=True)
    _image(d / "other" / "x.png", seed=9)
    (d / "images" / "alias.png").symlink_to(d / "other" / "x.png")
    set_cell(d, 0, "path", "images/alias.png")
    assert len(read_image_folder(d, progress=False)) == 4


def test_empty_path(tmp_path, capsys):
    d = make_folder(tmp_path)
    set_cell(d, 1, "path", "")
    assert_one_error(capsys, evaluate(d), "row 3", "empty path", root=tmp_path)


def test_missing_image(tmp_path, capsys):
    d = make_folder(tmp_path)
    (d / "images" / "2.png").unlink()
    assert_one_error(capsys, evaluate(d), "row 4", "2.png does not exist", root=tmp_path)


def test_every_row_pointing_at_one_file(tmp_path, capsys):
    d = make_folder(tmp_path)
    for i in range(4):
        set_cell(d, i, "path", "images/0.png")
    assert_one_error(capsys, evaluate(d), "row 3", "same file as row 2", root=tmp_path)


def test_duplicate_path_spelled_differently(tmp_path, capsys):
    d = make_folder(tmp_path)
    set_cell(d, 3, "path", "images/./1.png")
    assert_one_error(capsys, evaluate(d), "row 5", "same file as row 3", root=tmp_path)


def test_mask_path_outside(tmp_path, capsys):
    d = make_folder(tmp_path)
    _image(tmp_path / "mask.png")
    df = pd.read_csv(d / "metadata.csv", dtype=str, keep_default_na=False)
    df["mask_path"] = ["", "../mask.png", "", ""]
    df.to_csv(d / "metadata.csv", index=False)
    assert_one_error(capsys, evaluate(d), "row 3", "mask_path", "leaves", root=tmp_path)


def test_control_path_absolute(tmp_path, capsys):
    d = make_folder(tmp_path)
    _image(tmp_path / "c.png")
    df = pd.read_csv(d / "metadata.csv", dtype=str, keep_default_na=False)
    df["control_path"] = [str(tmp_path / "c.png"), "", "", ""]
    df.to_csv(d / "metadata.csv", index=False)
    assert_one_error(capsys, evaluate(d), "row 2", "control_path", "absolute", root=tmp_path)


# --------------------------------------------------------------------- images


def test_not_an_image(tmp_path, capsys):
    d = make_folder(tmp_path)
    (d / "images" / "1.png").write_text("not a png")
    assert_one_error(capsys, evaluate(d), "row 3", "cannot read image", "1.png", root=tmp_path)


def test_truncated_png(tmp_path, capsys):
    d = make_folder(tmp_path)
    p = d / "images" / "0.png"
    p.write_bytes(p.read_bytes()[:100])
    assert_one_error(capsys, evaluate(d), "row 2", "0.png", root=tmp_path)


def test_image_over_the_size_limit(tmp_path, capsys):
    d = make_folder(tmp_path)
    Image.new("1", (9000, 8000)).save(d / "images" / "3.png")  # 72M pixels, a small file
    assert_one_error(capsys, evaluate(d), "row 5", "9000x8000", "over the limit",
                     root=tmp_path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, capsys, monkeypatch):
    # a header claiming more pixels than PIL's own bomb limit: refused by our limit first
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    d = make_folder(tmp_path)
    assert_one_error(capsys, evaluate(d), "row 2", "too large", root=tmp_path)


def test_image_too_small_for_ssim(tmp_path, capsys):
    d = make_folder(tmp_path)
    _image(d / "images" / "2.png", size=(8, 8))
    assert_one_error(capsys, evaluate(d), "row 4", "8x8", "SSIM", root=tmp_path)


def test_images_of_different_sizes(tmp_path, capsys):
    d = make_folder(tmp_path)
    _image(d / "images" / "1.png", size=(40, 32))
    assert_one_error(capsys, evaluate(d), "row 3", "40x32", "one size", root=tmp_path)


def test_float_image_is_refused(tmp_path, capsys):
    d = make_folder(tmp_path)
    Image.fromarray(np.full((32, 32), 0.5, np.float32), "F").save(d / "images" / "f.tiff")
    set_cell(d, 0, "path", "images/f.tiff")
    assert_one_error(capsys, evaluate(d), "row 2", "floating-point", root=tmp_path)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    d = make_folder(tmp_path)
    values = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)  # 0..65472
    Image.fromarray(values).save(d / "images" / "0.png")
    assert Image.open(d / "images" / "0.png").mode == "I;16"
    ds = read_image_folder(d, progress=False)
    got = np.asarray(ds[0]["image"])
    assert got.dtype == np.uint8 and ds[0]["image"].mode == "L"
    expected = np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)  # 65535 -> 255
    assert np.array_equal(got, expected)
    assert (got == 255).mean() < 0.01 and abs(got.mean() - 127.4) < 1  # clipped: all 255


def test_rgba_and_palette_images_become_rgb(tmp_path):
    d = make_folder(tmp_path)
    Image.new("RGBA", (32, 32), (10, 20, 30, 0)).save(d / "images" / "0.png")
    Image.new("P", (32, 32), 7).save(d / "images" / "1.png")
    ds = read_image_folder(d, progress=False)
    assert ds[0]["image"].mode == "RGB" and ds[0]["image"].getpixel((0, 0)) == (10, 20, 30)
    assert ds[1]["image"].mode == "RGB"


# --------------------------------------------------------------------- values


@pytest.mark.parametrize(("value", "needle"), [
    ("999", "got 999.0"), ("inf", "got inf"), ("-1", "got -1.0"), ("121", "[0, 120]")])
def test_implausible_age(tmp_path, capsys, value, needle):
    d = make_folder(tmp_path)
    set_cell(d, 2, "age", value)
    assert_one_error(capsys, evaluate(d), "row 4", "age", needle, root=tmp_path)


def test_age_not_a_number(tmp_path, capsys):
    d = make_folder(tmp_path)
    set_cell(d, 0, "age", "forty")
    assert_one_error(capsys, evaluate(d), "row 2", "age 'forty' is not a number", root=tmp_path)


def test_age_nan(tmp_path, capsys):
    d = make_folder(tmp_path)
    set_cell(d, 0, "age", "nan")
    assert_one_error(capsys, evaluate(d), "row 2", "age is NaN", root=tmp_path)


def test_implausible_bmi(tmp_path, capsys):
    d = make_folder(tmp_path)
    df = pd.read_csv(d / "metadata.csv", dtype=str, keep_default_na=False)
    df["bmi"] = ["22", "1e6", "", ""]
    df.to_csv(d / "metadata.csv", index=False)
    assert_one_error(capsys, evaluate(d), "row 3", "bmi", root=tmp_path)


def test_unknown_sex(tmp_path, capsys):
    d = make_folder(tmp_path)
    set_cell(d, 1, "sex", "F")
    assert_one_error(capsys, evaluate(d), "unknown sex value 'F'", "row 3", root=tmp_path)


def test_unknown_finding(tmp_path, capsys):
    d = make_folder(tmp_path)
    set_cell(d, 0, "finding", "broken_leg")
    assert_one_error(capsys, evaluate(d), "unknown finding value 'broken_leg'", root=tmp_path)


def test_finding_outside_the_task(tmp_path, capsys):
    d = make_folder(tmp_path)
    set_cell(d, 0, "finding", "pneumothorax")
    assert_one_error(capsys, evaluate(d), "pneumothorax", "not classes of task", root=tmp_path)


def test_empty_sensitive_attribute(tmp_path, capsys):
    d = make_folder(tmp_path)
    set_cell(d, 3, "sex", "")
    assert_one_error(capsys, evaluate(d), "row 5", "empty sex", root=tmp_path)


def test_derived_column_disagrees_with_its_base(tmp_path, capsys):
    d = make_folder(tmp_path)
    df = pd.read_csv(d / "metadata.csv", dtype=str, keep_default_na=False)
    df["age_group"] = ["18-39", "18-39", "80+", "18-39"]
    df.to_csv(d / "metadata.csv", index=False)
    assert_one_error(capsys, evaluate(d), "row 4", "age_group '80+' does not match",
                     root=tmp_path)


def test_duplicate_sample_ids(tmp_path, capsys):
    d = make_folder(tmp_path)
    df = pd.read_csv(d / "metadata.csv", dtype=str, keep_default_na=False)
    df["sample_id"] = ["a", "b", "a", "c"]
    df.to_csv(d / "metadata.csv", index=False)
    assert_one_error(capsys, evaluate(d), "sample_id values are not unique", root=tmp_path)


# --------------------------------------------------------------------- options and paths


def test_run_out_is_a_file(tmp_path, capsys):
    (tmp_path / "runs").write_text("x")
    assert_one_error(capsys, ["run", "--method", "oversample", "--profile", "smoke", "--out",
                              str(tmp_path / "runs"), "--quiet"], "--out", "is a file",
                     root=tmp_path)


def test_run_out_below_a_file(tmp_path, capsys):
    (tmp_path / "runs").write_text("x")
    assert_one_error(capsys, ["run", "--method", "oversample", "--profile", "smoke", "--out",
                              str(tmp_path / "runs" / "deeper"), "--quiet"], "--out",
                     "is a file", root=tmp_path)


def test_evaluate_out_is_a_file(tmp_path, capsys):
    d = make_folder(tmp_path)
    (tmp_path / "res").write_text("x")
    assert_one_error(capsys, evaluate(d, "--out", str(tmp_path / "res")), "--out", "is a file",
                     root=tmp_path)


def test_evaluate_default_out_is_a_file(tmp_path, capsys):
    d = make_folder(tmp_path)
    (tmp_path / "evaluation").write_text("x")
    assert_one_error(capsys, evaluate(d), "--out (default)", "evaluation", root=tmp_path)


def test_synthetic_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert_one_error(capsys, evaluate(tmp_path / "f"), "--synthetic", "is a file",
                     root=tmp_path)


def test_write_split_onto_a_folder(tmp_path, capsys):
    (tmp_path / "split.json").mkdir()
    assert_one_error(capsys, ["datasets", "--summary", "phantom-cxr", "--write-split",
                              str(tmp_path / "split.json")], "--write-split", "is a folder",
                     root=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]  # no temp file left


def test_write_split_into_a_missing_folder(tmp_path, capsys):
    assert_one_error(capsys, ["datasets", "--summary", "phantom-cxr", "--write-split",
                              str(tmp_path / "no" / "split.json")], "--write-split",
                     "does not exist", root=tmp_path)


def test_check_split_missing(tmp_path, capsys):
    assert_one_error(capsys, ["datasets", "--summary", "phantom-cxr", "--check-split",
                              str(tmp_path / "none.json")], "--check-split", "does not exist")


def test_show_out_is_a_folder(tmp_path, capsys):
    assert_one_error(capsys, ["datasets", "--show", "phantom-cxr", "--out", str(tmp_path)],
                     "--out", "is a folder")


def test_images_zero(capsys):
    assert_one_error(capsys, ["datasets", "--summary", "phantom-cxr", "--images", "0"],
                     "--images must be >= 1")


def test_write_split_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    from benchmark.data.real import write_split_file

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_split_file(tmp_path / "s.json", dataset="x", method="m", assignment={"p": "train"})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------- real loaders


def _chexpert(tmp_path: Path) -> tuple[Path, pd.DataFrame, Path]:
    from real_fixtures import make_chexpert

    root = make_chexpert(tmp_path / "root")
    table = root / "CheXpert-v1.0-small" / "train.csv"
    return root, pd.read_csv(table, dtype=str, keep_default_na=False), table


def test_chexpert_path_climbing_out_of_the_root(tmp_path, capsys):
    from real_fixtures import stub_image

    root, df, table = _chexpert(tmp_path)
    stub_image(tmp_path / "outside.jpg")
    df.loc[0, "Path"] = "CheXpert-v1.0-small/train/patient00001/study1/../../../../../outside.jpg"
    df.to_csv(table, index=False)
    assert_one_error(capsys, ["datasets", "--summary", "chexpert", "--root", str(root)],
                     "chexpert", "outside.jpg", "leaves the root")


def test_chexpert_image_symlinked_out_of_the_root(tmp_path, capsys):
    from real_fixtures import stub_image

    root, df, _ = _chexpert(tmp_path)
    stub_image(tmp_path / "outside.jpg")
    p = root / df.loc[0, "Path"]
    p.unlink()
    p.symlink_to(tmp_path / "outside.jpg")
    assert_one_error(capsys, ["datasets", "--summary", "chexpert", "--root", str(root),
                              "--verify"], "resolves to", "outside the root")


def test_chexpert_header_only(tmp_path, capsys):
    root, df, table = _chexpert(tmp_path)
    df.iloc[:0].to_csv(table, index=False)
    assert_one_error(capsys, ["datasets", "--summary", "chexpert", "--root", str(root)],
                     "train.csv has a header but no rows")


def test_chexpert_duplicate_column(tmp_path, capsys):
    root, df, table = _chexpert(tmp_path)
    table.write_text(table.read_text().replace("Sex,", "Age,", 1))
    assert_one_error(capsys, ["datasets", "--summary", "chexpert", "--root", str(root)],
                     "train.csv", "'Age' occurs more than once")


def test_chexpert_implausible_age(tmp_path, capsys):
    root, df, table = _chexpert(tmp_path)
    df.loc[2, "Age"] = "999"
    df.to_csv(table, index=False)
    assert_one_error(capsys, ["datasets", "--summary", "chexpert", "--root", str(root)],
                     "age", "999")


# --------------------------------------------------------------------- damaged run folders
# (slow: one smoke run of the oversample baseline, then each case damages a copy of it)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from conftest import isolated_cache_dir

    from benchmark.runner import run

    out = tmp_path_factory.mktemp("fault-runs")
    with pytest.MonkeyPatch.context() as mp:
        cache = isolated_cache_dir(tmp_path_factory)
        mp.setenv("FAIRSYNTH_CACHE", cache)
        record = run(method="oversample", task=TASK, profile="smoke", seed=0, out=out,
                     progress=False)
    return out, record, cache


def _rerun(tmp_path, finished_run, damage, monkeypatch, caplog, capsys, *,
           compare: bool = True) -> dict:
    out, record, cache = finished_run
    monkeypatch.setenv("FAIRSYNTH_CACHE", cache)
    copy = tmp_path / "runs"
    shutil.copytree(out, copy, symlinks=True)
    rdir = copy / TASK / "oversample" / "smoke-seed0"
    (rdir / "result.json").unlink()
    damage(rdir)
    caplog.set_level("INFO")
    assert main(["run", "--method", "oversample", "--task", TASK, "--profile", "smoke",
                 "--out", str(copy), "--quiet", "--json"]) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    again = json.loads(cap.out)
    if compare:
        assert without_timings(again["metrics"]) == without_timings(
            json.loads(json.dumps(record["metrics"])))
    return again


def without_timings(obj):
    """``obj`` without its wall-clock fields (``time_s``): the only numbers a re-run may change."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k != "time_s"}
    if isinstance(obj, list | tuple):
        return [without_timings(v) for v in obj]
    return obj


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.slow
def test_truncated_checkpoint_file_with_its_done_kept_is_refitted(
        tmp_path, finished_run, monkeypatch, caplog, capsys):
    _rerun(tmp_path, finished_run, lambda r: _truncate(r / "checkpoint" / "generator.json"),
           monkeypatch, caplog, capsys)
    assert "fitting again" in caplog.text and "generator.json changed" in caplog.text


@pytest.mark.slow
def test_truncated_done_marker_is_redone(tmp_path, finished_run, monkeypatch, caplog, capsys):
    _rerun(tmp_path, finished_run, lambda r: _truncate(r / "checkpoint.DONE"), monkeypatch,
           caplog, capsys)
    assert "fitting again" in caplog.text and "checkpoint.DONE" in caplog.text


@pytest.mark.slow
def test_truncated_synthetic_metadata_is_resampled(tmp_path, finished_run, monkeypatch,
                                                   caplog, capsys):
    _rerun(tmp_path, finished_run, lambda r: _truncate(r / "synthetic" / "metadata.csv", 0.7),
           monkeypatch, caplog, capsys)
    assert "sampling again" in caplog.text and "metadata.csv changed" in caplog.text


@pytest.mark.slow
def test_deleted_synthetic_image_is_resampled(tmp_path, finished_run, monkeypatch, caplog,
                                              capsys):
    def damage(r: Path) -> None:
        sorted((r / "synthetic" / "images").glob("*.png"))[0].unlink()

    _rerun(tmp_path, finished_run, damage, monkeypatch, caplog, capsys)
    assert "sampling again" in caplog.text and "is missing" in caplog.text


@pytest.mark.slow
def test_truncated_downstream_checkpoint_trains_afresh(tmp_path, finished_run, monkeypatch,
                                                       caplog, capsys):
    def damage(r: Path) -> None:  # a classifier killed mid-training, its checkpoint cut
        (r / "downstream" / "real_plus_synthetic__tiny-resnet.json").unlink()
        (r / "downstream" / "real_plus_synthetic__tiny-resnet" / "checkpoint.pt").write_bytes(
            b"PK\x03\x04 truncated")

    again = _rerun(tmp_path, finished_run, damage, monkeypatch, caplog, capsys)
    assert "training afresh" in caplog.text and "checkpoint.pt is unreadable" in caplog.text
    assert again["metrics"]["generation"] == json.loads(
        json.dumps(finished_run[1]["metrics"]["generation"]))
    assert "real+synthetic/tiny-resnet" in again["metrics"]["downstream"]["classifiers"]


# --------------------------------------------------------------------- the trainer and shards


def _trainer_data():
    import datasets
    from conftest import make_rows

    from benchmark.diffusion import build_backbone, build_train_data
    from benchmark.schema import FEATURES
    from benchmark.tasks import TASKS

    b = build_backbone("smoke", image_channels=1, seed=0)
    ds = datasets.Dataset.from_dict(make_rows(16, size=32), features=FEATURES)
    return b, build_train_data(b, ds, TASKS.get(TASK))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["weights", "trainer_state", "optimizer"])
def test_damaged_last_training_checkpoint_falls_back_to_the_previous(tmp_path, damage, caplog):
    import torch

    from benchmark.diffusion import DiffusionTrainer, TrainConfig

    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, checkpoint_every=2, ema_decay=0.0,
                      log_every=1, seed=3, keep_checkpoints=3)
    b, data = _trainer_data()
    full = DiffusionTrainer(b, data, cfg, tmp_path / "a", progress=False).train()
    b1, data1 = _trainer_data()
    t1 = DiffusionTrainer(b1, data1, cfg, tmp_path / "b", progress=False)
    t1.train(stop_after=4)
    last = t1.checkpoints()[-1][1]
    assert last.name == "checkpoint-0000004"
    target = {"weights": next(last.rglob("*.safetensors")),
              "trainer_state": last / "trainer_state.json",
              "optimizer": next(last.rglob("optimizer*.bin"))}[damage]
    _truncate(target)
    caplog.set_level("INFO")
    b2, data2 = _trainer_data()
    resumed = DiffusionTrainer(b2, data2, cfg, tmp_path / "b", progress=False).train()
    assert "damaged training checkpoint" in caplog.text and target.name in caplog.text
    assert resumed.start_step == 2 and resumed.finished
    for p, q in zip(b.unet.parameters(), b2.unet.parameters(), strict=True):
        assert torch.equal(p, q)
    del full


@pytest.mark.slow
def test_loss_log_cut_mid_row(tmp_path, caplog):
    from benchmark.diffusion import DiffusionTrainer, TrainConfig

    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2, ema_decay=0.0,
                      log_every=1, seed=3)
    b, data = _trainer_data()
    t = DiffusionTrainer(b, data, cfg, tmp_path, progress=False)
    t.train(stop_after=2)
    log_csv = tmp_path / "loss_log.csv"
    text = log_csv.read_text()
    log_csv.write_text(text[:text.rindex(",") + 1][:-1] + "\n1")  # the last row cut short
    caplog.set_level("INFO")
    b2, data2 = _trainer_data()
    resumed = DiffusionTrainer(b2, data2, cfg, tmp_path, progress=False).train()
    assert resumed.finished and "damaged row" in caplog.text and "loss_log.csv" in caplog.text


def test_truncated_sample_shard_is_named_and_regenerated(tmp_path, caplog):
    from benchmark.diffusion import build_backbone, sample_images

    b = build_backbone("smoke", image_channels=1, seed=0)
    prompts = ["female, 80+, edema", "male, 18-39, no finding", "male, 40-59, cardiomegaly"]
    kw = dict(seed=5, steps=2, guidance_scale=2.0, batch_size=2, progress=False)
    first = sample_images(b, prompts, cache_dir=tmp_path, **kw)
    shard = sorted(tmp_path.glob("samples-*/shard-*.npy"))[0]
    _truncate(shard, 0.6)
    caplog.set_level("INFO")
    again = sample_images(b, prompts, cache_dir=tmp_path, **kw)
    assert "damaged sample shard" in caplog.text and shard.name in caplog.text
    assert np.array_equal(first, again)
    np.save(shard, np.zeros((5, 1, 32, 32), np.uint8))  # wrong number of images
    assert np.array_equal(sample_images(b, prompts, cache_dir=tmp_path, **kw), first)


def test_file_damage_finds_truncated_files_of_each_format(tmp_path):
    import torch
    from safetensors.torch import save_file

    from benchmark.markers import file_damage

    (tmp_path / "a.json").write_text('{"step": 4}')
    save_file({"w": torch.ones(64)}, tmp_path / "m.safetensors")
    np.save(tmp_path / "s.npy", np.ones((4, 1, 8, 8), np.uint8))
    torch.save({"x": torch.ones(64)}, tmp_path / "o.bin")
    assert file_damage(tmp_path) is None  # every intact file reads
    for name in ("a.json", "m.safetensors", "s.npy", "o.bin"):
        intact = (tmp_path / name).read_bytes()
        _truncate(tmp_path / name, 0.8)
        why = file_damage(tmp_path)
        assert why is not None and name in why, (name, why)
        (tmp_path / name).write_bytes(intact)
