"""The static leaderboard site: ``python -m leaderboard build --out site/``.

Every submission folder under ``--submissions`` (default ``leaderboard/submissions``) is
validated (:func:`leaderboard.validate.validate_submission`); a rejected one is left out,
logged, and listed on the index page with its one-line reason. The others become entries of
one page per (task, profile), ranked by the task's first headline metric
(``Task.headline_metrics``, direction :func:`benchmark.headline.direction`), with every
headline metric as mean +- sd (ddof 1) and 95% t-interval over seeds
(:func:`benchmark.sweep.seed_interval`). An entry whose interval on the ranking metric
overlaps the interval of the entry above it shares that entry's rank (a tie,
:func:`rank_entries`). Each entry carries its verification badge
(:func:`leaderboard.validate.verification_status`) and links to its method card (the
generator's description, options and the README beside its code). Pages are rendered from
jinja2 templates (``leaderboard/templates``); plots are matplotlib PNGs. Written to a
temporary folder and renamed, so a killed build leaves the old site.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmark.headline import direction, headline_value
from benchmark.sweep import LEVEL, seed_interval

from .validate import SubmissionError, validate_submission, verification_status

log = logging.getLogger(__name__)

DEFAULT_SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def rank_entries(entries: list[dict[str, Any]], key: str, how: str) -> list[dict[str, Any]]:
    """Sort ``entries`` by ``entry["metrics"][key]["mean"]`` (``how``: ``"min"`` or ``"max"``
    is best; undefined means last) and set ``rank`` and ``tie``: an entry whose interval
    ``[ci_low, ci_high]`` overlaps the interval of the entry ranked just above it takes that
    entry's rank (``tie`` True on both); otherwise its rank is its 1-based position."""
    def sort_key(e: dict[str, Any]) -> tuple[int, float]:
        m = e["metrics"][key]["mean"]
        return (1, 0.0) if m is None else (0, m if how == "min" else -m)

    ranked = sorted(entries, key=lambda e: (sort_key(e), e["method"]))
    for i, e in enumerate(ranked):
        e["rank"], e["tie"] = i + 1, False
        if i == 0:
            continue
        prev, a, b = ranked[i - 1], ranked[i - 1]["metrics"][key], e["metrics"][key]
        if None not in (a["ci_low"], b["ci_low"]) and a["ci_low"] <= b["ci_high"] and \
                b["ci_low"] <= a["ci_high"]:
            e["rank"], e["tie"], prev["tie"] = prev["rank"], True, True
    return ranked


def method_card(name: str) -> dict[str, Any]:
    """A method's card: description, default options, where its code lives, and the text of
    the README.md beside (or above) its module."""
    from benchmark.generators import GENERATORS

    cls = GENERATORS.get(name)
    path = Path(inspect.getfile(cls)).resolve()
    readme = next((p / "README.md" for p in (path.parent, path.parent.parent)
                   if (p / "README.md").is_file() and p.name not in ("", "/")), None)
    return {"name": name, "description": cls.description, "code": f"{cls.__module__}."
            f"{cls.__qualname__}", "options": dict(cls.default_config),
            "readme": readme.read_text() if readme is not None else None}


def _plot(page: dict[str, Any], key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [e for e in page["entries"] if e["metrics"][key]["mean"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(rows) + 1.5), dpi=100)
    ys = range(len(rows))
    means = [e["metrics"][key]["mean"] for e in rows]
    lo = [m - (e["metrics"][key]["ci_low"] if e["metrics"][key]["ci_low"] is not None else m)
          for m, e in zip(means, rows, strict=True)]
    hi = [(e["metrics"][key]["ci_high"] if e["metrics"][key]["ci_high"] is not None else m) - m
          for m, e in zip(means, rows, strict=True)]
    colors = ["#1a7f37" if e["status"] == "verified" else "#9a6700" for e in rows]
    ax.barh(list(ys), means, xerr=[lo, hi], color=colors, capsize=4)
    ax.set_yticks(list(ys), [e["method"] for e in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{key} (mean, {LEVEL:.0%} t-interval over seeds)")
    ax.set_title(f"{page['task']} ({page['profile']})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def collect(submissions: str | Path, *, allow_smoke: bool = False
            ) -> tuple[list[dict[str, Any]], list[str]]:
    """The pages (one per task x profile, entries ranked) and the rejection lines."""
    from benchmark.tasks import TASKS

    root = Path(submissions)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    pages: dict[tuple[str, str], dict[str, Any]] = {}
    rejected = []
    for sub in folders:
        try:
            checked = validate_submission(sub, allow_smoke=allow_smoke)
        except SubmissionError as err:
            log.warning("left out %s: %s", sub.name, err)
            rejected.append(f"{sub.name}: {err}")
            continue
        m = checked["manifest"]
        task = TASKS.get(m["task"])
        page = pages.setdefault((m["task"], m["profile"]), {
            "task": m["task"], "profile": m["profile"], "description": task.description,
            "headline": list(task.headline_metrics), "primary": task.headline_metrics[0],
            "directions": {k: direction(k) for k in task.headline_metrics}, "entries": []})
        records = [checked["records"][s] for s in sorted(checked["records"])]
        status, reason = verification_status(sub)
        page["entries"].append({
            "method": m["method"], "submission": sub.name, "status": status, "reason": reason,
            "seeds": sorted(checked["records"]),
            "metrics": {k: seed_interval([headline_value(r["metrics"], k) for r in records])
                        for k in page["headline"]},
        })
    if rejected:
        log.warning("%d of %d submission(s) left out (rejected)", len(rejected), len(folders))
    out = []
    for (_, _), page in sorted(pages.items()):
        page["entries"] = rank_entries(page["entries"], page["primary"],
                                       page["directions"][page["primary"]])
        out.append(page)
    return out, rejected


def build_site(out: str | Path, *, submissions: str | Path = DEFAULT_SUBMISSIONS,
               allow_smoke: bool = False) -> dict[str, Any]:
    """Render the site into ``out`` (replaced as a whole); returns a summary
    ``{"pages": [...], "rejected": [...], "entries": n}``."""
    import jinja2

    from benchmark.results import code_version

    pages, rejected = collect(submissions, allow_smoke=allow_smoke)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    common = {"version": code_version()["version"], "level": LEVEL}
    try:
        (tmp / "tasks").mkdir()
        (tmp / "methods").mkdir()
        methods = sorted({e["method"] for p in pages for e in p["entries"]})
        for page in pages:
            slug = f"{page['task']}--{page['profile']}"
            page["href"] = f"tasks/{slug}.html"
            page["plots"] = []
            for i, key in enumerate(page["headline"]):
                name = f"{slug}--{i}.png"
                _plot(page, key, tmp / "tasks" / name)
                page["plots"].append({"src": name, "alt": f"{key} by method"})
            (tmp / page["href"]).write_text(env.get_template("task.html.j2").render(
                title=f"{page['task']} ({page['profile']})", page=page, root="../", **common))
        for name in methods:
            (tmp / "methods" / f"{name}.html").write_text(env.get_template(
                "method.html.j2").render(title=name, card=method_card(name), root="../",
                                         **common))
        n = sum(len(p["entries"]) for p in pages)
        (tmp / "index.html").write_text(env.get_template("index.html.j2").render(
            title="leaderboard", pages=pages, rejected=rejected, n_entries=n, root="",
            **common))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"pages": [p["href"] for p in pages], "rejected": rejected, "entries": n}
