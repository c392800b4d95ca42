"""The readable summary of a result record (what ``benchmark run`` and ``evaluate`` print).

The record (``result.json``) is for machines; :func:`summary` renders it for a person: the
generation metrics per feature space with their intervals and per-group values, diversity,
condition adherence, and the downstream classifiers' accuracy and fairness.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci(e: dict[str, Any], digits: int = 2) -> str:
    """``value [low, high]`` of a metric entry (no interval when there is none)."""
    if e.get("value") is None:
        return "n/a" + (f" ({e['reason']})" if e.get("reason") else "")
    text = _fmt(e["value"], digits)
    if e.get("ci_low") is not None:
        text += f" [{_fmt(e['ci_low'], digits)}, {_fmt(e['ci_high'], digits)}]"
    return text


def _generation_lines(gen: dict[str, Any]) -> list[str]:
    from ..metrics.spaces import FEATURE_SPACES
    from ..metrics.table import BY_GROUP, summary_keys

    lines: list[str] = []
    boot = gen.get("settings", {}).get("bootstrap", {})
    if boot.get("resamples"):
        lines.append(f"  (brackets: {boot['level']:.0%} bootstrap interval, "
                     f"{boot['resamples']} resamples)")
    for name, info in gen.get("feature_spaces", {}).items():
        if not info.get("available"):
            lines.append(f"  {name} space unavailable: {info.get('reason')}")
            continue
        space = FEATURE_SPACES.get(name)
        k = space.keys()
        fd = gen[k["frechet"]]
        lines.append(f"  {k['frechet'].upper():<9} {_ci(fd)}  [{fd['n_real']} real vs "
                     f"{fd['n_synthetic']} synthetic, {info['extractor']}]")
        kd = gen[k["kernel"]]
        std = f" (std over subsets {kd['std']:.4f})" if kd.get("std") is not None else ""
        lines.append(f"  {k['kernel'].upper():<9} {_ci(kd, 4)}{std}")
        lines.append("  " + ", ".join(f"{k[b]} {_ci(gen[k[b]])}"
                                      for b in ("precision", "recall", "density", "coverage")))
        sk = summary_keys(space)
        for grouping, groups in gen[k["frechet"] + BY_GROUP].items():
            parts = ", ".join(f"{g} {_fmt(r['value'])} ({r['n_real']}/{r['n_synthetic']})"
                              for g, r in groups.items())
            lines.append(f"  {k['frechet'].upper()} by {grouping}: {parts}")
            lines.append(f"      variance {_ci(gen[sk['variance']][grouping])}; "
                         f"{sk['es'].upper()} {_ci(gen[sk['es']][grouping])}")
    div = gen.get("diversity", {})
    if div.get("synthetic"):
        for side in ("synthetic", "real"):
            per = div[side]
            measures = sorted({m for c in per.values() for m, r in c.items()
                               if r["value"] is not None})
            vals = {m: [c[m]["value"] for c in per.values() if c[m]["value"] is not None]
                    for m in measures}
            lines.append(f"  diversity ({side}, mean over {len(per)} classes): "
                         + ", ".join(f"{m} {np.mean(v):.4f}" for m, v in vals.items()))
        if div.get("unavailable"):
            lines.append("  unavailable: " + "; ".join(div["unavailable"].values()))
    adh = gen.get("condition_adherence")
    if adh:  # phantom tasks: the oracle's reading of each synthetic image
        for what in ("finding", "condition"):
            r = adh.get(what)
            if not r or r["value"] is None:
                continue
            worst = ", ".join(f"{a} {w:.3f}" for a, w in r["worst"].items() if w is not None)
            lines.append(f"  {what} adherence (oracle) {r['value']:.3f} over {r['n']} images"
                         + (f"; worst group by {worst}" if worst else ""))
    return lines


def _budget_text(record: dict[str, Any]) -> str:
    """``; budget 200 per class`` or ``; budget 0.5 x train``, from the record's allocation
    (empty for a record without one)."""
    budget = (record.get("allocation") or {}).get("budget")
    if not budget:
        return ""
    if budget["rule"] == "per-class":
        return f"; budget {budget['per_class']} per class"
    return f"; budget {budget['ratio']:g} x train"


def summary(record: dict[str, Any]) -> str:
    """The readable summary of a result record that ``benchmark run`` / ``evaluate`` print."""
    gen = record["metrics"]["generation"]
    c = record["counts"]
    lines = [
        f"fairsynth-bench {record['method']} on {record['task']} "
        f"(profile {record['profile']}, seed {record['seed']})",
        f"  data      {c['data']} images"
        + (f", train {c['train']}" if "train" in c else "")
        + f", test {c['test']}; synthetic {c['synthetic']}"
        + (f" (plan {c['plan_total']} in {c['plan_cells']} cells{_budget_text(record)})"
           if "plan_total" in c else ""),
    ]
    lines += _generation_lines(gen)
    if "downstream" in record["metrics"]:
        lines.extend(downstream_summary(record["metrics"]["downstream"]))
    if record.get("method_report"):
        lines.extend(method_report_lines(record["method_report"]))
    lines.append(f"  time      {record['timings_s'].get('total', 0):.0f} s")
    if "_path" in record:
        lines.append(f"  record    {record['_path']}")
    return "\n".join(lines)


def _scalar(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower() if isinstance(v, bool) else "n/a"
    if isinstance(v, int | float):
        return f"{v:.4g}"
    return str(v)


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def method_report_lines(report: dict[str, Any]) -> list[str]:
    """Lines of the CLI summary for the record's ``method_report`` (what the generator put
    there, e.g. FairGen's stage times and the oracle adherence of its preference pairs'
    winners and losers): one line per top-level entry, nested entries as ``a.b value``."""
    lines = ["  method report"]
    for key, value in report.items():
        if isinstance(value, dict):
            parts = ", ".join(f"{k} {_scalar(v)}" for k, v in _flatten(value))
            lines.append(f"    {key}: {parts}")
        else:
            lines.append(f"    {key}: {_scalar(value)}")
    return lines


def _fmt3(v: float | None) -> str:
    return _fmt(v, 3)


def downstream_summary(ds: dict[str, Any]) -> list[str]:
    """Lines of the CLI summary for ``metrics.downstream``: per classifier, test accuracy and
    AUC, then per sensitive attribute the worst group and DP, EO, ES-ACC (ESSP), NAR."""
    c = ds["counts"]
    lines = [f"  downstream classifiers on the real test split ({c['test']} images; train "
             f"{c['train_real']} real + {c['synthetic_used']} synthetic, "
             f"{c['image_size']} px)"]
    for name, r in ds["classifiers"].items():
        t = r["test"]
        lines.append(f"    {name:<28} acc {_fmt3(t['accuracy'])}  AUC {_fmt3(t['auc'])}"
                     f"  (trained on {r['n_train']})")
        for attr, f in r["fairness"].items():
            s = f["summary"]
            if s["reason"]:
                lines.append(f"      {attr}: {s['reason']}")
                continue
            lines.append(
                f"      {attr}: worst {s['worst_group']} {_fmt3(s['worst_group_accuracy'])}, "
                f"DP {_fmt3(s['dp'])}, EO {_fmt3(s['eo'])}, ES-ACC {_fmt3(s['es_acc'])}, "
                f"ES-AUC {_fmt3(s['es_auc'])}, NAR {_fmt3(s['nar'])}")
    for model, acc in ds["cas"].items():
        lines.append(f"    CAS ({model}, synthetic only -> real test): {_fmt3(acc)}")
    for name, why in ds["skipped"].items():
        lines.append(f"    {name}: skipped ({why})")
    sdm = ds.get("saliency_diversity")
    if sdm:
        per = ", ".join(f"{c} {_fmt3(v.get('score'))}" for c, v in sdm["by_class"].items())
        lines.append(f"  saliency diversity (1 = as diverse and sharp as real): mean "
                     f"{_fmt3(sdm['mean_score'])}" + (f" ({per})" if per else "")
                     + (f"; {sdm['reason']}" if sdm.get("reason") else ""))
    return lines
