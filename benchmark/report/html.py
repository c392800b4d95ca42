"""The HTML report of one run, or of several side by side (``benchmark report RUN_DIR...``).

Every run writes ``report.html`` beside its ``result.json`` (:func:`report_run`). A report is
one self-contained file (pictures embedded as PNG data URIs, rendered by matplotlib; the page
from a jinja2 template): the runs' provenance (task, method, profile, seed, config hash,
dataset fingerprint, benchmark version and commit, device), the sample grids, per-subgroup
FID / FD bars with the run's bootstrap intervals, a radar chart of per-group accuracy of the
downstream classifiers (FairGen, Fig. 5e style), a t-SNE (scikit-learn) of real test and
synthetic features coloured by subgroup (FairGen, Fig. 4c style; the oracle space on the
phantoms, else Inception; from the feature cache the evaluation filled), the downstream
fairness table and condition adherence per subgroup.
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
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    title = (f"{runs[0]['record']['method']} on {runs[0]['record']['task']} "
             f"({runs[0]['record']['profile']}, seed {runs[0]['record']['seed']})"
             if len(runs) == 1 else f"{len(runs)} runs side by side")
    html = env.get_template("report.html.j2").render(
        title=title, runs=runs, version=code_version()["version"],
        plots={"distances": _distance_plots(runs), "radar": _radar_plots(runs),
               "tsne": tsne_plots},
        tsne_reason=reason, attributes=attrs, fairness=fairness,
        adherence=_adherence_rows(runs))
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
