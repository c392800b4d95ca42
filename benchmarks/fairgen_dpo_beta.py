"""Diffusion-DPO strength at a small profile: FairGen's preference stage for several beta.

Usage::

    python benchmarks/fairgen_dpo_beta.py [--task phantom-cxr-fairgen] [--profile smoke]
        [--betas 5000,500,50,5] [--seeds 0] [--set KEY=VALUE ...] [--work DIR]
        [--jsonl FILE]

For each seed, fits ``fairgen``'s base stage and its simulated-physician pairs once (the
method's own :meth:`FairGen.fit`, with ``work/base`` and ``work/preferences`` reused), then
reruns only the preference stage (``work/dpo`` removed) with each ``dpo_beta`` and prints,
per beta:

- the trajectory of the DPO loss of each step's mini-batch (``pref_loss`` in the stage's
  ``loss_log.csv``) and its last ``pref_implicit_acc``;
- the stage's end on *every* pair (``method_report.dpo_eval``,
  :func:`methods.fairgen.stages.evaluate_preferences`: the final EMA UNet against the base):
  implicit reward accuracy (share of pairs with (m_l - r_l) - (m_w - r_w) > 0), the DPO loss
  at that beta, and the winners' and losers' MSE change against the reference (both far
  above 0: the policy ran away);
- the base loss (``loss_ddpm``) at the stage's first and last step.

``--set`` passes further fairgen options (``--set dpo_steps=20 --set dpo_lr=1e-4``).
``--jsonl`` appends one JSON line per (seed, beta). Numbers per step do not depend on machine
load; nothing here is timed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import tempfile
from pathlib import Path

from benchmark import PROFILES, TASKS
from benchmark.generators import FitContext
from benchmark.runner import load_task_data, pick_device, seed_everything, split
from methods.fairgen import FairGen


def _options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="phantom-cxr-fairgen")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--betas", default="5000,500,50,5")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", dest="options", action="append", default=[])
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--jsonl", default=None)
    args = ap.parse_args()
    task, prof = TASKS.get(args.task), PROFILES.get(args.profile)
    data = load_task_data(task, prof)
    train = split(data, "train")
    root = Path(args.work or tempfile.mkdtemp(prefix="fairgen-dpo-beta-"))
    extra = _options(args.options)
    device = pick_device()
    print(f"{args.task}, profile {args.profile}, {len(train)} training images; work {root}")
    print(f"{'seed':>4} {'beta':>7} | {'pref_loss per step':<40} | {'acc(all)':>8} "
          f"{'dpo(all)':>9} {'dm_w':>8} {'dm_l':>8} | {'ddpm first->last':>17}")
    for seed in (int(s) for s in args.seeds.split(",")):
        work = root / f"seed{seed}"
        for beta in (float(b) for b in args.betas.split(",")):
            shutil.rmtree(work / "dpo", ignore_errors=True)
            gen = FairGen({**extra, "dpo_beta": beta})
            gen.progress = False
            seed_everything(seed)
            gen.fit(train, FitContext(task=task, profile=prof, seed=seed, device=device,
                                      work_dir=work))
            with (work / "dpo" / "loss_log.csv").open() as f:
                rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
            ev = gen.report()["dpo_eval"]
            traj = [r["pref_loss"] for r in rows]
            shown = " ".join(f"{v:.2f}" for v in traj) if len(traj) <= 8 else \
                " ".join(f"{v:.2f}" for v in traj[:4]) + " .. " + \
                " ".join(f"{v:.2f}" for v in traj[-3:])
            print(f"{seed:>4} {beta:>7g} | {shown:<40} | {ev['implicit_acc']:>8.3f} "
                  f"{ev['dpo_loss']:>9.3f} {ev['winner_mse_change']:>8.4f} "
                  f"{ev['loser_mse_change']:>8.4f} | {rows[0]['loss_ddpm']:.3f} -> "
                  f"{rows[-1]['loss_ddpm']:.3f}")
            if args.jsonl:
                line = {"task": args.task, "profile": args.profile, "seed": seed, "beta": beta,
                        "options": extra, "pref_loss": traj,
                        "pref_implicit_acc": [r["pref_implicit_acc"] for r in rows],
                        "loss_ddpm": [r["loss_ddpm"] for r in rows], "eval": ev,
                        "pairs": gen.report()["preferences"]["n_pairs"],
                        "log2": math.log(2)}
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
