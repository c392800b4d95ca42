"""Recipe search for the small diffusion profiles: what a training budget buys.

Usage::

    python benchmarks/diffusion_recipe.py [--task phantom-cxr-finding] [--profile cpu]
        [--steps 1000] [--eval-every 250] [--budget-s SECONDS] [--n-eval 400]
        [--fid {never,end,always}] [--guidance 2.0,3.0] [--sample-steps 10,20]
        [--set KEY=VALUE ...]
        [--unet KEY=JSON ...] [--compare-plain STEPS] [--tag NAME] [--jsonl FILE]
    python benchmarks/diffusion_recipe.py --plot FILE.jsonl [--png OUT.png] [--tags A,B]

Trains the profile's diffusion backbone (``profile.diffusion.backbone``, with ``--unet``
overrides of its ``UNet2DConditionModel`` keyword arguments) on the task's training split with
the profile's training options (the profile's ``diffusion`` settings, with ``--set`` overrides, e.g.
``--set lr=2e-3 --set snr_gamma=5``), exactly as ``sd-finetune`` does (the same
:class:`DiffusionTrainer`, :func:`build_train_data` and :meth:`DiffusionGenerator.sample`).
Every ``--eval-every`` optimizer steps (and at the end, or at the first checkpoint after
``--budget-s`` seconds of training) it samples the run's allocation plan for ``--n-eval``
images with the EMA UNet and prints:

- the trainer's images/s (examples per second over the steps since the last checkpoint,
  timed in ``on_step_end``) and the sampler's images/s;
- condition adherence, overall and per subgroup, and ``fd_oracle``, from the harness's own
  :func:`benchmark.oracle.oracle_metrics` (the same code and keys as ``benchmark run``);
- FID against the profile's real test subset (``--fid``; the harness's InceptionV3 extractor
  and :func:`benchmark.metrics.fid`, real features from the feature cache).

``--compare-plain N`` also times N steps of our trainer against a plain diffusers training
loop (the loop of diffusers' ``train_text_to_image.py``: ``DDPMScheduler.add_noise``, UNet
forward, MSE to the scheduler's target, backward, gradient clipping, ``AdamW.step``, a
diffusers ``EMAModel`` step) on the same model and batch, and prints the ratio.

Quality per optimizer step does not depend on machine load; timings do: report ``uptime``
beside them. ``--jsonl`` appends one JSON line per checkpoint (settings + figures).
``--plot`` draws finding adherence and fd_oracle of the runs in such a file (``--tags``: only
these) against the images seen in training, one row per task (timings under load are not
comparable; the idle trainer's throughput converts images to seconds).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark import GENERATORS, PROFILES, TASKS
from benchmark.diffusion import (
    DiffusionTrainer,
    build_backbone,
    build_train_data,
)
from benchmark.diffusion.trainer import effective_precision
from benchmark.evaluation import seeded_subset
from benchmark.generators import allocate
from benchmark.metrics import fid
from benchmark.metrics.features import default_cache
from benchmark.metrics.spaces import feature_extractors
from benchmark.oracle import config_for_profile, get_oracle, oracle_metrics
from benchmark.report.grid import sample_grid
from benchmark.runner import load_task_data, split


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: list[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{what} {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k] = _value(v)
    return out


def _load() -> str:
    return os.getloadavg()[0].__format__(".2f")


def _adherence_line(adh: dict[str, Any]) -> tuple[dict[str, Any], str]:
    find = adh["finding"]
    cond = adh.get("condition", {})
    worst = {a: w for a, w in find.get("worst", {}).items()}
    by = {a: {g: round(v["value"], 3) for g, v in groups.items()}
          for a, groups in find.get("by_group", {}).items()}
    summary = {"finding": find["value"], "condition": cond.get("value"), "worst": worst,
               "by_group": by}
    parts = [f"finding {find['value']:.3f}"]
    if cond.get("value") is not None:
        parts.append(f"condition {cond['value']:.3f}")
    parts += [f"worst {a} {w:.3f}" for a, w in worst.items() if w is not None]
    return summary, ", ".join(parts)


def plain_loop_seconds(unet, data, sched, batch: int, steps: int, lr: float,
                       ema_decay: float, precision: str = "no") -> list[float]:
    """Seconds per step of diffusers' example training loop on ``unet`` (a copy is trained),
    its forward pass under the same autocast as our trainer's (``precision``, the effective
    mixed precision)."""
    import contextlib

    from diffusers.training_utils import EMAModel

    unet = copy.deepcopy(unet).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)
    ema = EMAModel(unet.parameters(), decay=ema_decay) if ema_decay > 0 else None
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, len(data), (batch,), generator=g)
        x0 = data.latents[idx]
        cond = data.class_embeddings[data.class_ids[idx]]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g)
        noisy = sched.add_noise(x0, noise, t)
        target = (noise if sched.config.prediction_type == "epsilon"
                  else sched.get_velocity(x0, noise, t))
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())
        with autocast:
            pred = unet(noisy, t, encoder_hidden_states=cond).sample
        loss = torch.nn.functional.mse_loss(pred.float(), target.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(unet.parameters())
        times.append(time.perf_counter() - t0)
    return times


def plot(jsonl: str, png: str, tags: list[str] | None = None) -> None:
    """Finding adherence and fd_oracle against images seen in training, one row of two panels
    per task, one line per tag, guidance scale and evaluation plan (``n`` images)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for line in Path(jsonl).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        tag = r["settings"]["tag"]
        if tags and tag not in tags:
            continue
        name = f"{tag} w={r['guidance_scale']:g} n={r['n_synthetic']}"
        runs.setdefault(r["settings"]["task"], {}).setdefault(name, []).append(r)
    if not runs:
        raise SystemExit(f"{jsonl}: no rows" + (f" with tags {tags}" if tags else ""))
    fig, axes = plt.subplots(len(runs), 2, figsize=(13, 4.6 * len(runs)), squeeze=False)
    for (task, by_name), (ax1, ax2) in zip(sorted(runs.items()), axes, strict=True):
        for name, rows in sorted(by_name.items()):
            rows.sort(key=lambda r: r["step"])
            tr = rows[0]["settings"]["train"]
            x = [r["step"] * tr["batch_size"] * tr["grad_accum"] / 1000 for r in rows]
            style = "o-" if rows[0]["settings"].get("precision") == "bf16" else "s--"
            ax1.plot(x, [r["adherence"]["finding"] for r in rows], style, label=name)
            ax2.plot(x, [r["fd_oracle"] for r in rows], style, label=name)
        ax1.axhline(0.6 if "cxr" in task else 0.5, color="grey", ls="--", lw=0.8)
        ax2.axhline(60, color="grey", ls="--", lw=0.8)
        ax1.set(xlabel="images seen in training (thousands)", ylim=(0, 1),
                ylabel="finding adherence (oracle)", title=task)
        ax2.set(xlabel=ax1.get_xlabel(), ylabel="fd_oracle (lower is better)", yscale="log",
                title=task)
        ax1.legend(fontsize=6)
    fig.suptitle("cpu-profile diffusion recipes (solid: bf16, dashed: float32; 2 idle cores "
                 "train ~110 / ~94 images/s)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print(f"wrote {png}")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="phantom-cxr-finding")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--method", default="sd-finetune")
    ap.add_argument("--steps", type=int, default=None, help="default: the profile's")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--budget-s", type=float, default=None)
    ap.add_argument("--n-eval", type=int, default=400)
    ap.add_argument("--fid", choices=("never", "end", "always"), default="end")
    ap.add_argument("--guidance", default=None, help="comma-separated guidance scales")
    ap.add_argument("--sample-steps", default=None,
                    help="comma-separated sampler step counts (default: the profile's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--unet", action="append", default=[], metavar="KEY=JSON")
    ap.add_argument("--text", action="append", default=[], metavar="KEY=JSON",
                    help="CLIPTextConfig overrides of the backbone's text encoder")
    ap.add_argument("--spec", action="append", default=[], metavar="KEY=JSON",
                    help="BackboneSpec overrides (pixel_factor, resolution, beta_schedule, ...)")
    ap.add_argument("--compare-plain", type=int, default=0, metavar="STEPS")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--jsonl", default=None)
    ap.add_argument("--grid", default=None, metavar="DIR",
                    help="write a sample grid (subgroup x class) at every checkpoint here")
    ap.add_argument("--work", default=None, help="training folder (default: a temporary one)")
    ap.add_argument("--plot", default=None, metavar="JSONL")
    ap.add_argument("--png", default="benchmarks/diffusion_recipe.png")
    ap.add_argument("--tags", default=None, help="with --plot: comma-separated tags to draw")
    args = ap.parse_args(argv)
    if args.plot:
        plot(args.plot, args.png, args.tags.split(",") if args.tags else None)
        return []

    task = TASKS.get(args.task)
    prof = PROFILES.get(args.profile)
    options = _pairs(args.set, "--set")
    if args.steps is not None:
        options["steps"] = args.steps
    unet_over = _pairs(args.unet, "--unet")
    base_spec = prof.diffusion.backbone
    text_over = _pairs(args.text, "--text")
    spec = dataclasses.replace(base_spec, **_pairs(args.spec, "--spec"),
                               unet={**base_spec.unet, **unet_over},
                               text={**base_spec.text, **text_over})

    gen_cls = GENERATORS.get(args.method)
    times: list[float] = []

    class Clocked(gen_cls):  # type: ignore[misc, valid-type]
        def on_step_end(self, step, outputs):
            super().on_step_end(step, outputs)
            times.append(time.perf_counter())

    gen = Clocked(options)
    gen.progress = False
    gen.resolved = gen.resolve(prof)
    guidance = ([float(x) for x in args.guidance.split(",")] if args.guidance
                else [float(gen.resolved["guidance_scale"])])
    sample_steps = ([int(x) for x in args.sample_steps.split(",")] if args.sample_steps
                    else [int(gen.resolved["sample_steps"])])
    data_all = load_task_data(task, prof)
    train, test = split(data_all, "train"), split(data_all, "test")
    real = seeded_subset(test, prof.eval_real, args.seed)
    oracle = get_oracle(task.dataset, config_for_profile(args.profile, task.image_size))
    inception = None
    if args.fid != "never":
        inception = feature_extractors(task, profile=args.profile,
                                       spaces=["inception"]).available.get("inception")
    cache = default_cache()
    f_real = None
    if inception is not None:
        f_real = inception.extract([np.asarray(im.convert("L" if task.channels == 1 else "RGB"))
                                    for im in real["image"]], cache=cache, progress=False)

    if args.grid:
        Path(args.grid).mkdir(parents=True, exist_ok=True)
        sample_grid(real, task, Path(args.grid) / f"real-{args.task}.png", per_cell=2)
    backbone = build_backbone(spec, image_channels=task.channels, seed=args.seed)
    gen.backbone, gen.task, gen.device = backbone, task, "cpu"
    t0 = time.perf_counter()
    data = build_train_data(backbone, train, task, prompt_style=gen.resolved["prompt_style"],
                            progress=False)
    encode_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in backbone.unet.parameters())
    cfg = gen.train_config(args.seed)
    settings = {"task": args.task, "profile": args.profile, "method": args.method,
                "tag": args.tag, "train": cfg.as_dict(), "unet": spec.unet, "text": spec.text,
                "spec": {k: v for k, v in spec.as_dict().items() if k not in ("unet", "text")},
                "precision": effective_precision(cfg.mixed_precision, "cpu"),
                "unet_params": n_params, "sample": {k: gen.resolved[k] for k in (
                    "sampler", "sample_steps", "sample_batch_size")}}
    print(f"# {args.method} on {args.task}, profile {args.profile} + {options} unet "
          f"{unet_over} text {text_over}; UNet {n_params / 1e6:.2f}M params; "
          f"{len(data)} training images "
          f"(encoded in {encode_s:.1f} s); torch threads {torch.get_num_threads()}; "
          f"precision {effective_precision(cfg.mixed_precision, 'cpu')}; "
          f"load {_load()}", flush=True)

    plain = None
    if args.compare_plain:
        plain = plain_loop_seconds(backbone.unet, data, backbone.noise_scheduler,
                                   cfg.batch_size, args.compare_plain + 2, cfg.lr,
                                   cfg.ema_decay,
                                   effective_precision(cfg.mixed_precision, "cpu"))[2:]

    budget = round(prof.synthetic_ratio * len(train))
    plan = allocate(train, task, min(args.n_eval, budget) if args.n_eval else budget,
                    seed=args.seed)
    work_ctx = (tempfile.TemporaryDirectory() if args.work is None else None)
    work = Path(work_ctx.name if work_ctx else args.work)
    trainer = DiffusionTrainer(backbone, data, cfg, work / "diffusion", hooks=gen,
                               progress=False)
    rows: list[dict[str, Any]] = []
    step_times: list[float] = []  # seconds of every timed step (between two on_step_end)
    done, train_s = 0, 0.0
    while done < cfg.steps:
        target = min(cfg.steps, done + args.eval_every)
        times.clear()
        c0 = time.perf_counter()
        result = trainer.train(stop_after=target)
        chunk_s = time.perf_counter() - c0
        train_s += chunk_s
        steps_here = result.end_step - result.start_step
        step_times.extend(np.diff(times).tolist())
        step_s = (statistics.median(np.diff(times)) if len(times) > 2
                  else chunk_s / max(steps_here, 1))
        done = result.end_step
        training_unet = backbone.unet
        backbone.unet = result.unet
        last = done >= cfg.steps or (args.budget_s is not None and train_s >= args.budget_s)
        for w, n_steps in [(w, n) for w in guidance for n in sample_steps]:
            gen.resolved["guidance_scale"] = w
            gen.resolved["sample_steps"] = n_steps
            s0 = time.perf_counter()
            synthetic = gen.sample(plan)
            sample_s = time.perf_counter() - s0
            om = oracle_metrics(real, synthetic, task, oracle)
            adh, adh_text = _adherence_line(om["condition_adherence"])
            # what the oracle reads, per requested finding (a model that ignores the
            # condition shows one column for every row)
            mode = "L" if task.channels == 1 else "RGB"
            read = oracle.predict([np.asarray(im.convert(mode)) for im in synthetic["image"]])
            confusion: dict[str, dict[str, int]] = {}
            for want, got in zip(synthetic["finding"], read["finding"], strict=True):
                confusion.setdefault(want, {}).setdefault(got, 0)
                confusion[want][got] += 1
            row = {"settings": settings, "step": done, "guidance_scale": w,
                   "sample_steps": n_steps,
                   "train_s": round(train_s, 1), "s_per_step": round(step_s, 4),
                   "train_images_per_s": round(cfg.batch_size * cfg.grad_accum / step_s, 2),
                   "sample_images_per_s": round(len(synthetic) / sample_s, 2),
                   "n_synthetic": len(synthetic), "fd_oracle": om["fd_oracle"]["value"],
                   "adherence": adh, "confusion": confusion,
                   "loss": result.losses[-1]["loss"], "load": _load(),
                   "date": time.strftime("%Y-%m-%d %H:%M")}
            if inception is not None and (args.fid == "always" or last):
                mode = "L" if task.channels == 1 else "RGB"
                f_syn = inception.extract([np.asarray(im.convert(mode))
                                           for im in synthetic["image"]], progress=False)
                row["fid"] = fid(f_real, f_syn)
            print(f"step {done:5d} w={w:g} n={n_steps}: {adh_text}; "
                  f"fd_oracle {row['fd_oracle']:.1f}"
                  + (f"; FID {row['fid']:.1f}" if "fid" in row else "")
                  + f" | train {row['train_images_per_s']:.1f} img/s ({step_s:.3f} s/step), "
                  f"sample {row['sample_images_per_s']:.1f} img/s, loss {row['loss']:.4f}, "
                  f"load {row['load']}", flush=True)
            if args.grid:
                Path(args.grid).mkdir(parents=True, exist_ok=True)
                sample_grid(synthetic, task, Path(args.grid) /
                            f"{args.tag or 'run'}-step{done:05d}-w{w:g}-n{n_steps}.png",
                            per_cell=2)
            print("  requested -> read: " + "; ".join(
                f"{want}: " + ", ".join(f"{g} {n}" for g, n in sorted(got.items(),
                                                                     key=lambda x: -x[1]))
                for want, got in sorted(confusion.items())), flush=True)
            rows.append(row)
            if args.jsonl:
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps(row, default=str) + "\n")
        backbone.unet = training_unet
        if last:
            break
    if plain is not None:
        if not step_times:
            raise SystemExit("--compare-plain needs --eval-every >= 2 (two steps in a row to "
                             "time our trainer's step)")
        ours_med, plain_med = statistics.median(step_times), statistics.median(plain)
        print(f"trainer vs plain diffusers loop (batch {cfg.batch_size}): ours "
              f"{ours_med:.3f} s/step, plain {plain_med:.3f} s/step, ratio ours/plain "
              f"{ours_med / plain_med:.2f} (load {_load()})")
        if rows:
            rows[-1]["plain_s_per_step"] = round(plain_med, 4)
            rows[-1]["ours_s_per_step"] = round(ours_med, 4)
    if work_ctx is not None:
        work_ctx.cleanup()
    return rows


if __name__ == "__main__":
    main()
