"""Claims tables: per-seed metrics of several groups of runs, summarised over seeds.

Usage::

    python benchmarks/claims_table.py --group LABEL=RUN_DIR [--group ...]
        --metric KEY [--metric KEY ...] [--json OUT.json] [--title TEXT]

Each ``RUN_DIR`` is searched for ``result.json`` records (a sweep's output folder, or one
run folder per seed); the records of a group must be one task, method and profile with
distinct seeds (checked; that they share every other option is the caller's to ensure). ``KEY`` is a
flat metric name of :func:`benchmark.headline.flatten_metrics` (the names of ``sweep.json``,
e.g. ``generation.fid``, ``generation.fid_variance[sex]``,
``downstream.real+synthetic.dp[sex]``) or one of the names this script adds from the
record's adherence section: ``adherence.finding[ATTR=GROUP]`` and
``adherence.condition[ATTR=GROUP]`` (per-subgroup oracle adherence), and
``downstream.saliency_diversity`` (the record's ``metrics.downstream.saliency_diversity
.mean_score``, the saliency diversity metric's mean over classes); on mask-controlled runs
``mask_adherence[ATTR=GROUP]`` and ``mask_adherence.real`` (the real images' own level); on
tasks with repeated-subset FID ``fid_subsets``,
``fid_subsets.real_vs_real`` (means over the subsets) and the same per group,
``fid_subsets[ATTR=GROUP]`` (also ``fd_oracle_subsets``); on tasks with held-out
intersections ``held_out.fid[POOL]``, ``held_out.fd_oracle[POOL]``,
``held_out.adherence.finding[POOL]`` and ``held_out.adherence.ATTR[POOL]`` (the oracle reads
the attribute asked for) for POOL ``held_out`` and ``seen``.

Every cell is the mean over seeds with its 95% Student-t interval
(:func:`benchmark.sweep.seed_interval`, the sweep aggregate's definition), printed as a
Markdown table with one column per group; ``--json`` writes the summaries.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmark.headline import flatten_metrics
from benchmark.sweep import seed_interval


def adherence_keys(metrics: dict[str, Any]) -> dict[str, float]:
    """``adherence.<kind>[attr=group]`` for every subgroup of the record's oracle adherence
    (``metrics.generation.condition_adherence``; absent on real tasks)."""
    out: dict[str, float] = {}
    adh = metrics.get("generation", {}).get("condition_adherence") or {}
    for kind in ("finding", "condition"):
        for attr, groups in (adh.get(kind, {}).get("by_group") or {}).items():
            for group, v in groups.items():
                if isinstance(v, dict) and v.get("value") is not None:
                    out[f"adherence.{kind}[{attr}={group}]"] = float(v["value"])
    return out


def extra_keys(metrics: dict[str, Any]) -> dict[str, float]:
    """The keys this script adds to :func:`benchmark.headline.flatten_metrics`'s: the
    per-subgroup adherence (:func:`adherence_keys`) and the saliency diversity metric's
    mean score (``downstream.saliency_diversity``, when the record has one), and the mask
    adherence, repeated-subset FID and held-out keys (module docstring)."""
    out = adherence_keys(metrics)
    sdm = (metrics.get("downstream") or {}).get("saliency_diversity") or {}
    if sdm.get("mean_score") is not None:
        out["downstream.saliency_diversity"] = float(sdm["mean_score"])
    gen = metrics.get("generation") or {}
    held = gen.get("held_out") or {}
    for pool in ("held_out", "seen"):  # tasks with held-out intersections (CompDiff's)
        for space in ("fid", "fd_oracle"):
            if ((held.get(space) or {}).get(pool) or {}).get("value") is not None:
                out[f"held_out.{space}[{pool}]"] = float(held[space][pool]["value"])
        adh = (held.get("condition_adherence") or {}).get(pool) or {}
        if (adh.get("finding") or {}).get("value") is not None:
            out[f"held_out.adherence.finding[{pool}]"] = float(adh["finding"]["value"])
        for attr, a in (adh.get("attributes") or {}).items():
            if a.get("value") is not None:
                out[f"held_out.adherence.{attr}[{pool}]"] = float(a["value"])
    masks = gen.get("mask_adherence") or {}
    for attr, groups in (masks.get("by_group") or {}).items():
        for group, v in groups.items():
            if isinstance(v, dict) and v.get("value") is not None:
                out[f"mask_adherence[{attr}={group}]"] = float(v["value"])
    if (masks.get("real") or {}).get("value") is not None:
        out["mask_adherence.real"] = float(masks["real"]["value"])
    for space in ("fid", "fd_oracle"):
        sub = gen.get(f"{space}_subsets") or {}
        for name, part in (("", sub), *(((f"[{a}={g}]", e) for a, groups in
                                         (sub.get("by_group") or {}).items()
                                         for g, e in groups.items()))):
            # the synthetic-vs-real distance is stored as "fid" in both spaces
            for kind, key in (("fid", f"{space}_subsets{name}"),
                              ("real_vs_real", f"{space}_subsets.real_vs_real{name}")):
                if (part.get(kind) or {}).get("mean") is not None:
                    out[key] = float(part[kind]["mean"])
    return out


def load_group(run_dir: Path) -> list[dict[str, Any]]:
    """The records under ``run_dir``, one per seed, sorted by seed."""
    records = [json.loads(p.read_text()) for p in sorted(run_dir.rglob("result.json"))]
    if not records:
        raise SystemExit(f"error: {run_dir}: no result.json below it")
    keys = {(r["task"], r["method"], r["profile"]) for r in records}
    if len(keys) != 1:
        raise SystemExit(f"error: {run_dir}: records of several task/method/profile: {keys}")
    seeds = [r["seed"] for r in records]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: {run_dir}: a seed twice ({sorted(seeds)}); one run per seed")
    return sorted(records, key=lambda r: r["seed"])


def summarise(records: list[dict[str, Any]], metrics: list[str]) -> dict[str, Any]:
    flat = [{**flatten_metrics(r["metrics"]), **extra_keys(r["metrics"])} for r in records]
    return {"seeds": [r["seed"] for r in records],
            "task": records[0]["task"], "method": records[0]["method"],
            "profile": records[0]["profile"],
            "metrics": {m: {**seed_interval([f.get(m) for f in flat]),
                            "values": [f.get(m) for f in flat]} for m in metrics}}


def cell(s: dict[str, Any], digits: int) -> str:
    if s["mean"] is None:
        return "n/a"
    text = f"{s['mean']:.{digits}f}"
    if s["ci_low"] is not None:
        text += f" [{s['ci_low']:.{digits}f}, {s['ci_high']:.{digits}f}]"
    if s["n_missing"]:
        text += f" ({s['n']} of {s['n'] + s['n_missing']} seeds)"
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", action="append", required=True, metavar="LABEL=RUN_DIR")
    ap.add_argument("--metric", action="append", required=True, metavar="KEY")
    ap.add_argument("--json", default=None)
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    groups: dict[str, dict[str, Any]] = {}
    for g in args.group:
        if "=" not in g:
            raise SystemExit(f"error: --group {g!r}: expected LABEL=RUN_DIR")
        label, path = g.split("=", 1)
        groups[label] = summarise(load_group(Path(path)), args.metric)
    if args.title:
        print(f"**{args.title}**\n")
    labels = list(groups)
    seeds = {label: groups[label]["seeds"] for label in labels}
    print("| metric | " + " | ".join(f"{lb} (seeds {','.join(map(str, seeds[lb]))})"
                                      for lb in labels) + " |")
    print("|---|" + "---|" * len(labels))
    for m in args.metric:
        digits = 3 if any(x in m for x in ("adherence", "accuracy", "auc", "dp[", "eo[",
                                           "essp", "es_acc", "nar", "eodds", "saliency")) else 1
        print(f"| {m} | " + " | ".join(cell(groups[lb]["metrics"][m], digits)
                                       for lb in labels) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(groups, indent=2, sort_keys=True) + "\n")
    return groups


if __name__ == "__main__":
    main()
