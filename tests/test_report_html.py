"""The run report's record-dependent sections (benchmark.report.html) on records whose
generation block comes from the real evaluation code (cheap stand-in features): the held-out
intersections (table and bars), the repeated-subset FID beside its real-vs-real bound in the
generation table, and the mask adherence, each present when the record has it and absent when
it does not. No browser (the Chromium check is in test_leaderboard.py)."""

from __future__ import annotations

import dataclasses
import json
import re

import datasets
import numpy as np
import pytest
from conftest import make_rows
from PIL import Image
from stand_ins import MeanStdMax

from benchmark.evaluation import KEY_HELD_OUT, generation_metrics
from benchmark.metrics.mask_adherence import KEY_MASK_ADHERENCE
from benchmark.profiles import PROFILES
from benchmark.report import write_report
from benchmark.schema import FEATURES
from benchmark.tasks import TASKS

PROFILE = dataclasses.replace(PROFILES.get("smoke"), eval_real=40, eval_synthetic=40,
                              bootstrap_resamples=5)


def _record(task: str, generation: dict) -> dict:
    return {"task": task, "method": "test-method", "profile": "smoke", "seed": 0,
            "config_hash": "c" * 64, "dataset_fingerprint": "d" * 64,
            "benchmark": {"version": "0", "git_commit": None}, "device": {"device": "cpu"},
            "created_at": "2000-01-01T00:00:00+00:00", "timings_s": {"total": 1.0},
            "counts": {"synthetic": 40}, "config": {}, "metrics": {"generation": generation}}


def _report(tmp_path, name: str, task: str, generation: dict) -> str:
    run = tmp_path / name
    run.mkdir()
    (run / "result.json").write_text(json.dumps(_record(task, generation)))
    return write_report([run], tmp_path / f"{name}.html", tsne=False).read_text()


def _rows(n: int, seed: int, split: str) -> datasets.Dataset:
    rows = make_rows(n, seed)
    ages = ["80+", "18-39", "40-59", "60-79"]
    rows["sex"] = ["female" if i % 2 else "male" for i in range(n)]
    rows["age_group"] = [ages[(i // 2) % 4] for i in range(n)]
    rows["split"] = [split] * n
    return datasets.Dataset.from_dict(rows, features=FEATURES)


def _row_of(html: str, table_id: str, first_cells: str) -> str:
    """The <tr> of table ``table_id`` whose text contains ``first_cells``."""
    table = html[html.index(f'id="{table_id}"'):]
    table = table[:table.index("</table>")]
    rows = [r for r in re.findall(r"<tr>.*?</tr>", table, flags=re.S) if first_cells in r]
    assert rows, f"no row with {first_cells!r} in {table_id}"
    return rows[0]


def test_the_held_out_section_shows_held_out_vs_seen(tmp_path):
    gen = generation_metrics(_rows(40, 1, "test"), _rows(40, 2, "train"),
                             TASKS.get("phantom-cxr-heldout"), PROFILE,
                             extractors={"inception": MeanStdMax()}, progress=False)
    sec = gen[KEY_HELD_OUT]["fid"]
    html = _report(tmp_path, "held", "phantom-cxr-heldout", gen)
    row = _row_of(html, "held-out-table", '<td class="name">fid</td>')
    e, s = sec["held_out"], sec["seen"]
    assert (f"{e['value']:.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}] "
            f"({e['n_real']} / {e['n_synthetic']})") in row
    assert f"{s['value']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]" in row
    cell = sec["cells"]["female x 80+"]
    assert f"female x 80+ {cell['value']:.2f}" in row and "male x 18-39" in row
    assert len(re.findall(r'<img class="plot" src="data:image/png;base64,[^"]+" '
                          r'alt="held-out vs seen intersections">', html)) == 1
    assert 'id="generation-table"' in html and 'id="subsets-table"' not in html
    assert 'id="mask-adherence"' not in html


def _cardiac_generation() -> dict:
    from benchmark.data.phantoms.cardiac import PHANTOM, render, render_mask

    params = PHANTOM.generate_params(50, seed=0)
    imgs, masks = [render(p, 64) for p in params], [render_mask(p, 64) for p in params]

    def rows(idx, split, control):
        r = make_rows(len(idx), 0, size=64)
        r["image"] = [Image.fromarray(imgs[i]) for i in idx]
        r["mask"] = [Image.fromarray(masks[i]) for i in idx]
        r["sex"] = [params[i].sex for i in idx]
        r["bmi_class"] = [params[i].bmi_class for i in idx]
        r["finding"] = [params[i].finding for i in idx]
        r["split"] = [split] * len(idx)
        if control:
            r["control"] = [Image.fromarray(np.stack([masks[i]] * 3, -1)) for i in idx]
        return datasets.Dataset.from_dict(r, features=FEATURES)

    # synthetic: other patients' images, each with its own mask as control
    return generation_metrics(rows(range(30, 50), "test", False),
                              rows(range(10, 30), "train", True),
                              TASKS.get("phantom-cardiac-hf"), PROFILE,
                              extractors={"inception": MeanStdMax()}, progress=False,
                              train=rows(range(0, 10), "train", False))


def test_the_subset_fid_and_the_mask_adherence_are_in_the_report(tmp_path):
    gen = _cardiac_generation()
    html = _report(tmp_path, "cardiac", "phantom-cardiac-hf", gen)
    sub = gen["fid_subsets"]
    row = _row_of(html, "generation-table", '<td class="name">fid</td>')
    assert f"<td>{gen['fid']['value']:.2f}</td>" in row
    assert f'<td class="subsets">{sub["fid"]["mean"]:.2f} ({sub["fid"]["std"]:.2f})</td>' in row
    bound = sub["real_vs_real"]
    assert f'<td class="bound">{bound["mean"]:.2f} ({bound["std"]:.2f})</td>' in row
    assert f"{sub['repeats']} x {sub['subset_size']}" in row
    female = sub["by_group"]["sex"]["female"]
    grow = _row_of(html, "subsets-table", "sex: female")
    assert f"<td>{female['fid']['mean']:.2f} ({female['fid']['std']:.2f})</td>" in grow
    m = gen[KEY_MASK_ADHERENCE]
    mrow = _row_of(html, "mask-adherence-table", "test-method seed 0")
    assert f"<td>{m['value']:.3f}</td>" in mrow and f"<td>{m['real']['value']:.3f}</td>" in mrow
    assert f"lv_myocardium {m['by_structure']['lv_myocardium']['value']:.3f}" in mrow
    assert f"female {m['by_group']['sex']['female']['value']:.3f}" in mrow
    assert 'id="held-out"' not in html


def test_a_record_without_them_has_none_of_these_sections(tmp_path):
    task = TASKS.get("phantom-cxr-finding")
    gen = generation_metrics(_rows(40, 1, "test"), _rows(40, 2, "train"), task, PROFILE,
                             extractors={"inception": MeanStdMax()}, progress=False)
    assert not {KEY_HELD_OUT, KEY_MASK_ADHERENCE, "fid_subsets"} & set(gen)
    html = _report(tmp_path, "plain", task.name, gen)
    row = _row_of(html, "generation-table", '<td class="name">fid</td>')
    assert f"<td>{gen['fid']['value']:.2f}</td>" in row
    for absent in ('id="held-out"', 'id="held-out-table"', 'id="subsets-table"',
                   'class="subsets"', "real-vs-real", 'id="mask-adherence"'):
        assert absent not in html, absent


@pytest.mark.parametrize("section", ["held_out", "mask_adherence"])
def test_a_malformed_section_is_left_out_not_fatal(tmp_path, section):
    task = TASKS.get("phantom-cxr-finding")
    gen = generation_metrics(_rows(40, 1, "test"), _rows(40, 2, "train"), task, PROFILE,
                             extractors={"inception": MeanStdMax()}, progress=False)
    gen[section] = "not a section"
    html = _report(tmp_path, section, task.name, gen)
    assert 'id="held-out"' not in html and 'id="mask-adherence"' not in html
