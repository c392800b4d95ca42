"""The HTML report of one run, or of several side by side (``benchmark report RUN_DIR...``).

Every run writes ``report.html`` beside its ``result.json`` (:func:`report_run`). A report is
one self-contained file (pictures embedded as PNG data URIs, rendered by matplotlib; the page
from a jinja2 template): the runs' provenance (task, method, profile, seed, config hash,
dataset fingerprint, benchmark version and commit, device), the sample grids, per-subgroup
FID / FD bars with the run's bootstrap intervals, a radar chart of per-group accuracy of the
downstream classifiers (FairGen, Fig. 5e style), a t-SNE (scikit-learn) of real test and
synthetic features coloured by subgroup (FairGen, Fig. 4c style; the oracle space on the
phantoms, else Inception; from the feature cache the evaluation filled), the downstream
fairness table and condition adherence per subgroup. When a record has them: the generation
table's repeated-subset FID (``<fd key>_subsets``: mean (std) over subsets beside the
real-vs-real lower bound, overall and per group), the held-out intersections
(``generation.held_out``: a table and bars of held-out vs seen) and the mask adherence
(``generation.mask_adherence``, beside the real test images' own level); each section is
left out when no record has it.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
TSNE_MAX_POINTS = 600  # per side (real, synthetic): t-SNE stays a few seconds


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _distance_plots(runs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One figure per feature space: per grouping, bars per subgroup (one colour per run)
    with the bootstrap interval as error bars."""
    import numpy as np

    plt = _plt()
    out = []
    spaces = []
    for r in runs:
        for k, v in r["record"]["metrics"]["generation"].items():
            if k.endswith("_by_group") and k.removesuffix("_by_group") in ("fid", "fd_oracle") \
                    and k not in spaces and isinstance(v, dict) and v:
                spaces.append(k)
    for key in spaces:
        groupings = list(next(r["record"]["metrics"]["generation"][key] for r in runs
                              if key in r["record"]["metrics"]["generation"]))
        fig, axes = plt.subplots(1, len(groupings), figsize=(4.5 * len(groupings), 3.6),
                                 squeeze=False)
        for ax, grouping in zip(axes[0], groupings, strict=True):
            groups = sorted({g for r in runs for g in (r["record"]["metrics"]["generation"]
                                                        .get(key, {}).get(grouping) or {})})
            width = 0.8 / len(runs)
            for i, r in enumerate(runs):
                table = r["record"]["metrics"]["generation"].get(key, {}).get(grouping) or {}
                xs, ys, lo, hi = [], [], [], []
                for j, g in enumerate(groups):
                    e = table.get(g) or {}
                    if e.get("value") is None:
                        continue
                    xs.append(j + (i - (len(runs) - 1) / 2) * width)
                    ys.append(e["value"])
                    lo.append(e["value"] - (e.get("ci_low") if e.get("ci_low") is not None
                                            else e["value"]))
                    hi.append((e.get("ci_high") if e.get("ci_high") is not None
                               else e["value"]) - e["value"])
                ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=r["label"])
            ax.set_xticks(np.arange(len(groups)), groups, rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{key.removesuffix('_by_group')} by {grouping}", fontsize=9)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        out.append({"src": _png(fig), "alt": f"{key} per subgroup"})
    return out


def _headline_classifiers(rec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    ds = rec["metrics"].get("downstream") or {}
    backbones = (ds.get("config") or {}).get("backbones") or []
    if not backbones:
        return []
    return [(name.split("/")[0], clf) for name, clf in sorted((ds.get("classifiers") or {})
                                                               .items())
            if name.endswith("/" + backbones[0])]


def _radar_plots(runs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One radar per sensitive attribute: per-group accuracy of each run's classifiers
    (real, real+synthetic, synthetic) on the real test split."""
    plt = _plt()
    out = []
    attrs = sorted({a for r in runs for _, c in _headline_classifiers(r["record"])
                    for a in (c.get("fairness") or {})})
    for attr in attrs:
        groups = sorted({g for r in runs for _, c in _headline_classifiers(r["record"])
                         for g in ((c.get("fairness") or {}).get(attr) or {}).get("by_group", {})})
        if len(groups) < 3:  # a radar needs three axes; two groups draw as a line
            groups = groups + [""] * (3 - len(groups))
        angles = [2 * math.pi * i / len(groups) for i in range(len(groups))]
        fig = plt.figure(figsize=(4.6, 4.6))
        ax = fig.add_subplot(projection="polar")
        for r in runs:
            for train_set, clf in _headline_classifiers(r["record"]):
                by = ((clf.get("fairness") or {}).get(attr) or {}).get("by_group", {})
                vals = [(by.get(g) or {}).get("accuracy") for g in groups]
                vals = [0.0 if v is None else v for v in vals]
                label = train_set if len(runs) == 1 else f"{r['label']}: {train_set}"
                ax.plot(angles + angles[:1], vals + vals[:1], marker="o", label=label)
        ax.set_xticks(angles, groups, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"accuracy per {attr} group", fontsize=9)
        ax.legend(fontsize=6, loc="upper right", bbox_to_anchor=(1.35, 1.12))
        fig.tight_layout()
        out.append({"src": _png(fig), "alt": f"radar of per-group accuracy by {attr}"})
    return out


def _tsne_plots(runs: list[dict[str, Any]]) -> tuple[list[dict[str, str]], str]:
    """A t-SNE per run of real test and synthetic features (the subsets the evaluation
    scored, so the features come from the cache), coloured by intersectional subgroup;
    circles real, crosses synthetic."""
    import numpy as np
    from sklearn.manifold import TSNE

    from ..data import read_image_folder
    from ..evaluation import image_arrays, seeded_subset
    from ..metrics import default_cache
    from ..metrics.spaces import feature_extractors
    from ..profiles import PROFILES
    from ..runner import load_task_data, split
    from ..schema import column
    from ..tasks import TASKS

    plt = _plt()
    out, reason = [], "no synthetic images to embed"
    for r in runs:
        rec, rdir = r["record"], r["dir"]
        syn_dir = rdir / "synthetic"
        if not (syn_dir / "metadata.csv").is_file() or not rec["counts"].get("synthetic"):
            continue
        task, prof = TASKS.get(rec["task"]), PROFILES.get(rec["profile"])
        spaces = feature_extractors(task, device="cpu", profile=prof.name).available
        name = "oracle" if "oracle" in spaces else next(iter(spaces), None)
        if name is None:
            reason = "no feature space available"
            continue
        root = rec["config"].get("root")
        test = split(load_task_data(task, prof, root=root), "test")
        synthetic = read_image_folder(syn_dir, required_attributes=task.sensitive_attributes,
                                      progress=False)
        real = seeded_subset(test, min(prof.eval_real, TSNE_MAX_POINTS), rec["seed"])
        synthetic = seeded_subset(synthetic, min(prof.eval_synthetic, TSNE_MAX_POINTS),
                                  rec["seed"] + 1)
        ex = spaces[name]
        feats = [ex.extract(image_arrays(ds, task.channels), cache=default_cache(),
                            batch_size=prof.feature_batch_size, progress=False)
                 for ds in (real, synthetic)]
        x = np.concatenate(feats)
        if len(x) < 5:
            reason = "too few images for a t-SNE"
            continue
        emb = TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                   random_state=rec["seed"]).fit_transform(x)
        labels = [" x ".join(str(v) for v in vals) for ds in (real, synthetic)
                  for vals in zip(*(column(ds, a) for a in task.sensitive_attributes),
                                  strict=True)] if task.sensitive_attributes else \
            ["all"] * len(x)
        fig, ax = plt.subplots(figsize=(6.5, 4.8))
        cmap = plt.get_cmap("tab10")
        n_real = len(feats[0])
        for i, lab in enumerate(sorted(set(labels))):
            idx = np.array([j for j, v in enumerate(labels) if v == lab])
            for part, marker in ((idx[idx < n_real], "o"), (idx[idx >= n_real], "x")):
                if len(part):
                    ax.scatter(emb[part, 0], emb[part, 1], s=18, marker=marker,
                               color=cmap(i % 10), label=lab if marker == "o" or
                               not (idx < n_real).any() else None)
        ax.set_title(f"{r['label']}: t-SNE of {name} features (o real, x synthetic)",
                     fontsize=9)
        ax.legend(fontsize=6, bbox_to_anchor=(1.02, 1), loc="upper left")
        fig.tight_layout()
        out.append({"src": _png(fig), "alt": f"t-SNE of {r['label']}"})
    return out, reason


def _fairness_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    attrs = sorted({a for r in runs for _, c in _headline_classifiers(r["record"])
                    for a in (c.get("fairness") or {})})
    rows = []
    for r in runs:
        for train_set, clf in _headline_classifiers(r["record"]):
            values = [clf["test"].get("accuracy"), clf["test"].get("auc")]
            for a in attrs:
                s = ((clf.get("fairness") or {}).get(a) or {}).get("summary") or {}
                values += [s.get(k) for k in ("worst_group_accuracy", "dp", "eo", "es_acc",
                                              "nar")]
            rows.append({"run": r["label"], "classifier": train_set, "values": values})
    return attrs, rows


def _adherence_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        adh = r["record"]["metrics"]["generation"].get("condition_adherence") or {}
        for kind in ("condition", "finding"):
            e = adh.get(kind)
            if not isinstance(e, dict):
                continue
            groups = "; ".join(
                f"{grouping}: " + ", ".join(f"{g} {v['value']:.2f}" for g, v in by.items()
                                             if v.get("value") is not None)
                for grouping, by in (e.get("by_group") or {}).items())
            rows.append({"run": r["label"], "kind": kind, "value": e.get("value"),
                         "groups": groups})
    return rows


def _gen(r: dict[str, Any]) -> dict[str, Any]:
    return r["record"]["metrics"]["generation"]


def _fd_keys(gen: dict[str, Any]) -> list[tuple[str, str]]:
    """(space name, its Fréchet key) of every available feature space of a record."""
    from ..metrics.spaces import FEATURE_SPACES, FRECHET

    out = []
    for name, info in (gen.get("feature_spaces") or {}).items():
        if info.get("available") and name in FEATURE_SPACES:
            key = FEATURE_SPACES.get(name).key(FRECHET)
            if key in gen:
                out.append((name, key))
    return out


def _mean_std(e: dict[str, Any] | None) -> str:
    if not e or e.get("mean") is None:
        return "n/a"
    return f"{e['mean']:.2f}" + (f" ({e['std']:.2f})" if e.get("std") is not None else "")


def _generation_rows(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                           list[dict[str, Any]]]:
    """The generation table (per run and feature space: the Fréchet distance with its
    interval and, when the record has ``<fd key>_subsets``, the repeated-subset mean (std)
    beside the real-vs-real lower bound) and the per-group rows of the subset FIDs."""
    from ..metrics.frechet import KEY_SUBSETS

    rows, groups = [], []
    for r in runs:
        gen = _gen(r)
        for _, key in _fd_keys(gen):
            e = gen[key]
            sub = gen.get(key + KEY_SUBSETS)
            rows.append({
                "run": r["label"], "metric": key, "value": e.get("value"),
                "ci": (f"[{e['ci_low']:.2f}, {e['ci_high']:.2f}]"
                       if e.get("ci_low") is not None and e.get("ci_high") is not None
                       else ""),
                "n": f"{e.get('n_real', 0)} / {e.get('n_synthetic', 0)}",
                "subsets": None if sub is None else {
                    "fid": _mean_std(sub.get("fid")), "bound": _mean_std(sub.get("real_vs_real")),
                    "size": f"{sub.get('repeats')} x {sub.get('subset_size')}",
                    "reason": sub.get("reason")}})
            for attr, by in ((sub or {}).get("by_group") or {}).items():
                for g, v in by.items():
                    groups.append({"run": r["label"], "metric": key, "group": f"{attr}: {g}",
                                   "fid": _mean_std(v.get("fid")),
                                   "bound": _mean_std(v.get("real_vs_real")),
                                   "size": f"{v.get('repeats')} x {v.get('subset_size')}",
                                   "reason": v.get("reason") or ""})
    return rows, groups


def _entry_text(e: dict[str, Any] | None) -> str:
    if not e or e.get("value") is None:
        return "n/a" + (f" ({e['reason']})" if e and e.get("reason") else "")
    ci = (f" [{e['ci_low']:.2f}, {e['ci_high']:.2f}]" if e.get("ci_low") is not None
          and e.get("ci_high") is not None else "")
    return f"{e['value']:.2f}{ci} ({e.get('n_real', 0)} / {e.get('n_synthetic', 0)})"


def _held_out(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Rows of the held-out intersections table (``generation.held_out``: per run and
    distance, the held-out pool, the seen pool and each held-out cell; then the oracle's
    adherence of both pools) and one bar plot of held-out vs seen per distance."""
    import numpy as np

    from ..evaluation import HELD_OUT, KEY_HELD_OUT, SEEN
    from ..oracle.adherence import KEY_ADHERENCE

    rows, bars = [], {}
    for r in runs:
        held = _gen(r).get(KEY_HELD_OUT)
        if not isinstance(held, dict):
            continue
        for key, sec in held.items():
            if not isinstance(sec, dict) or HELD_OUT not in sec:
                continue
            if key == KEY_ADHERENCE:
                for kind in ("finding", "condition"):
                    vals = [((sec.get(p) or {}).get(kind) or {}).get("value")
                            for p in (HELD_OUT, SEEN)]
                    ns = [(sec.get(p) or {}).get("n", 0) for p in (HELD_OUT, SEEN)]
                    if all(v is None for v in vals):
                        continue
                    rows.append({"run": r["label"], "metric": f"{kind} adherence (oracle)",
                                 "held_out": "n/a" if vals[0] is None else
                                 f"{vals[0]:.3f} ({ns[0]} images)",
                                 "seen": "n/a" if vals[1] is None else
                                 f"{vals[1]:.3f} ({ns[1]} images)", "cells": ""})
                continue
            cells = "; ".join(f"{g} {_entry_text(e)}" for g, e in (sec.get("cells") or {})
                              .items())
            rows.append({"run": r["label"], "metric": key, "held_out": _entry_text(sec[HELD_OUT]),
                         "seen": _entry_text(sec.get(SEEN)), "cells": cells})
            bars.setdefault(key, []).append((r["label"], sec))
    plots = []
    if bars:
        plt = _plt()
        fig, axes = plt.subplots(1, len(bars), figsize=(4.8 * len(bars), 3.6), squeeze=False)
        for ax, (key, secs) in zip(axes[0], bars.items(), strict=True):
            width = 0.8 / len(secs)
            for i, (label, sec) in enumerate(secs):
                vals = [(sec.get(p) or {}).get("value") for p in (HELD_OUT, SEEN)]
                xs = [j + (i - (len(secs) - 1) / 2) * width for j in range(2)]
                ys = [np.nan if v is None else v for v in vals]
                lo = [0.0 if v is None or (sec.get(p) or {}).get("ci_low") is None else
                      v - sec[p]["ci_low"] for v, p in zip(vals, (HELD_OUT, SEEN), strict=True)]
                hi = [0.0 if v is None or (sec.get(p) or {}).get("ci_high") is None else
                      sec[p]["ci_high"] - v for v, p in zip(vals, (HELD_OUT, SEEN),
                                                            strict=True)]
                ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=label)
            ax.set_xticks([0, 1], ["held-out cells", "seen cells"], fontsize=8)
            ax.set_title(f"{key}: held-out vs seen intersections", fontsize=9)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        plots.append({"src": _png(fig), "alt": "held-out vs seen intersections"})
    return rows, plots


def _values(by: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {v['value']:.3f}" for k, v in (by or {}).items()
                     if v.get("value") is not None)


def _mask_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the mask adherence table (``generation.mask_adherence``): overall Dice, the
    real test images' own level, per structure and per group."""
    from ..metrics.mask_adherence import KEY_MASK_ADHERENCE

    rows = []
    for r in runs:
        m = _gen(r).get(KEY_MASK_ADHERENCE)
        if not isinstance(m, dict):
            continue
        real = m.get("real") or {}
        rows.append({"run": r["label"], "value": m.get("value"), "n": m.get("n", 0),
                     "real": real.get("value"), "reason": m.get("reason") or "",
                     "structures": _values(m.get("by_structure")),
                     "real_structures": _values(real.get("by_structure")),
                     "groups": "; ".join(f"{a}: {_values(by)}" for a, by in
                                         (m.get("by_group") or {}).items())})
    return rows


def write_report(run_dirs: list[str | Path], out: str | Path, *, tsne: bool = True) -> Path:
    """Write the HTML report of the runs in ``run_dirs`` (each with a ``result.json``) to
    ``out`` atomically; returns its path. A folder without a record is a ValueError."""
    import jinja2

    from ..results import code_version

    runs = []
    for d in map(Path, run_dirs):
        try:
            rec = json.loads((d / "result.json").read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{d}/result.json: cannot be read ({err.__class__.__name__}); "
                             "expected a finished run folder") from None
        grid = d / "synthetic_grid.png"
        runs.append({"dir": d, "record": rec,
                     "label": f"{rec['method']} seed {rec['seed']}",
                     "grid": ("data:image/png;base64," + base64.b64encode(grid.read_bytes())
                              .decode()) if grid.is_file() else None})
    labels = [r["label"] for r in runs]
    for r in runs:
        if labels.count(r["label"]) > 1:
            r["label"] = f"{r['label']} ({r['record']['task']}, {r['record']['profile']})"
    tsne_plots, reason = ([], "t-SNE not drawn for this report (the smoke profile's run "
                               "reports skip it; benchmark report RUN_DIR draws it)") \
        if not tsne else _safe_tsne(runs)
    attrs, fairness = _fairness_rows(runs)
    generation, subset_groups = _generation_rows(runs)
    held_out, held_out_plots = _held_out(runs)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    title = (f"{runs[0]['record']['method']} on {runs[0]['record']['task']} "
             f"({runs[0]['record']['profile']}, seed {runs[0]['record']['seed']})"
             if len(runs) == 1 else f"{len(runs)} runs side by side")
    html = env.get_template("report.html.j2").render(
        title=title, runs=runs, version=code_version()["version"],
        plots={"distances": _distance_plots(runs), "radar": _radar_plots(runs),
               "tsne": tsne_plots, "held_out": held_out_plots},
        tsne_reason=reason, attributes=attrs, fairness=fairness,
        adherence=_adherence_rows(runs), generation=generation, subset_groups=subset_groups,
        held_out=held_out, mask_adherence=_mask_rows(runs))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html)
    tmp.replace(out)
    return out


def _safe_tsne(runs: list[dict[str, Any]]) -> tuple[list[dict[str, str]], str]:
    try:
        return _tsne_plots(runs)
    except (OSError, ValueError) as err:  # e.g. a real dataset's --root moved since the run
        return [], f"t-SNE not drawn: {' '.join(str(err).split())[:200]}"


def report_run(run_dir: str | Path, *, tsne: bool = True) -> Path | None:
    """Write ``run_dir/report.html``; a report that cannot be drawn is logged in one line and
    never fails the run (its record is already written)."""
    try:
        return write_report([run_dir], Path(run_dir) / "report.html", tsne=tsne)
    except Exception as err:  # noqa: BLE001 - the report is a view; the run's result stands
        log.warning("report.html not written: %s", " ".join(str(err).split())[:300])
        return None
