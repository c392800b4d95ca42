"""Training-step cost of cbdm and fairdiffusion next to plain fine-tuning (sd-finetune).

Usage::

    python benchmarks/diffmech_step.py [--profile cpu] [--steps 5] [--seed 0] [--json]

Each method trains its profile's backbone on the chest X-ray phantom's training split (the
smoke-sized phantom, 240 images) with the profile's batch size, twice: for 1 step and for
1 + ``--steps`` steps, checkpointing only at the end; the difference of the two wall times
divided by ``--steps`` is the time per optimizer step without the set-up (model build,
accelerate, data encoding). CBDM runs the UNet on twice the batch (own and other class);
FairDiffusion adds per-sample weights and, every ``window`` steps, a GP-UCB fit.
Prints seconds per step per method and the ratio to sd-finetune.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmark import GENERATORS, PROFILES, TASKS
from benchmark.diffusion import DiffusionTrainer, TrainConfig, build_backbone, build_train_data
from benchmark.runner import load_task_data, split

METHODS = ("sd-finetune", "cbdm", "fairdiffusion")


def seconds_for(method: str, profile: str, steps: int, seed: int, work: Path) -> float:
    task = TASKS.get("phantom-cxr-finding")
    train = split(load_task_data(task, PROFILES.get("smoke")), "train")
    gen = GENERATORS.get(method)()
    gen.resolved = gen.resolve(PROFILES.get(profile))
    gen.progress = False
    backbone = build_backbone(gen.resolved["backbone"], image_channels=task.channels, seed=seed)
    data = build_train_data(backbone, train, task, progress=False)
    base = gen.train_config(seed).as_dict()
    cfg = TrainConfig(**{**base, "steps": steps, "checkpoint_every": steps,
                         "warmup_steps": 0})
    t0 = time.perf_counter()
    DiffusionTrainer(backbone, data, cfg, work, hooks=gen, progress=False).train()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = {}
    for method in METHODS:
        with tempfile.TemporaryDirectory() as tmp:
            one = seconds_for(method, args.profile, 1, args.seed, Path(tmp) / "a")
            more = seconds_for(method, args.profile, 1 + args.steps, args.seed, Path(tmp) / "b")
        out[method] = max(more - one, 0.0) / args.steps
    if args.json:
        print(json.dumps({"profile": args.profile, "seconds_per_step": out}))
        return
    print(f"training step, profile {args.profile} (phantom-cxr, batch as the profile)")
    for method, s in out.items():
        print(f"  {method:14s} {s:7.2f} s/step   x{s / out['sd-finetune']:.2f}")


if __name__ == "__main__":
    main()
