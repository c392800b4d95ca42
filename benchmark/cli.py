"""Command line: ``python -m benchmark {run,evaluate,tasks,methods,datasets,profiles}``.

Choices come from the registries; an unknown name prints one line listing the valid names and
exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .profiles import DEFAULT_PROFILE
from .registry import UnknownNameError
from .tasks import DEFAULT_TASK

log = logging.getLogger("benchmark")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=DEFAULT_TASK,
                   help=f"task name (default: {DEFAULT_TASK}; list: `benchmark tasks`)")
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"smoke, cpu, gpu or paper (default: {DEFAULT_PROFILE})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--root", default=None,
                   help="local copy of a real dataset (not needed for the phantoms)")
    p.add_argument("--json", action="store_true", help="print the result record as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars or info logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="fairsynth-bench: train, sample and score generators for image quality "
                    "and subgroup fairness.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="train -> sample -> evaluate one method on one task",
                       description="Train a generator on the task's training split, sample "
                                   "the allocation plan, score the samples and write a result "
                                   "record.")
    p.add_argument("--method", required=True, help="generator name (list: `benchmark methods`)")
    p.add_argument("--out", default="runs", help="output folder (default: runs)")
    _add_common(p)

    p = sub.add_parser("evaluate", help="score a folder of images against a task's real test set",
                       description="Score a folder of images with a metadata.csv (columns path, "
                                   "finding and the task's sensitive attributes) against the "
                                   "task's real test split. Use the profile the images were "
                                   "made for: the phantom's size depends on it.")
    p.add_argument("--synthetic", required=True, help="folder with metadata.csv and images")
    p.add_argument("--out", default=None,
                   help="folder for result.json (default: <synthetic>/../evaluation)")
    _add_common(p)

    for name, what in (("tasks", "tasks"), ("methods", "generators (methods and baselines)"),
                       ("datasets", "datasets (phantoms and real loaders)"),
                       ("profiles", "run profiles")):
        p = sub.add_parser(name, help=f"list the registered {what}",
                           description=f"List the registered {what}, one line each.")
        if name == "datasets":
            p.add_argument("--show", metavar="NAME", default=None,
                           help="write a PNG grid of the dataset's samples (rows = subgroup, "
                                "columns = class) instead of listing")
            p.add_argument("--task", default=None,
                           help="task whose subgroups and classes lay out the grid "
                                "(default: the first task on the dataset)")
            p.add_argument("--images", type=int, default=2000,
                           help="phantom images to draw the grid from (default: 2000)")
            p.add_argument("--root", default=None, help="local copy of a real dataset")
            p.add_argument("--out", default=None,
                           help="PNG path (default: docs/<NAME>_grid.png)")
            p.add_argument("--per-cell", type=int, default=1,
                           help="images per (subgroup, class) cell, side by side (default: 1; "
                                "2 shows a cardiac patient's ED and ES frames)")
    return parser


def show_dataset(args: argparse.Namespace) -> int:
    """``datasets --show NAME``: write a sample grid PNG; returns the exit status."""
    from .data import DATASETS
    from .report import sample_grid
    from .tasks import TASKS

    spec = DATASETS.get(args.show)
    if args.per_cell < 1:
        print(f"error: --per-cell must be >= 1, got {args.per_cell}", file=sys.stderr)
        return 2
    if args.task is not None:
        task = TASKS.get(args.task)
    else:
        on_it = [t for _, t in TASKS.items() if t.dataset == spec.name]
        if not on_it:
            print(f"error: no task uses dataset {spec.name!r}; pass --task", file=sys.stderr)
            return 2
        task = on_it[0]
    if not spec.phantom and args.root is None:
        print(f"error: dataset {spec.name!r} needs --root", file=sys.stderr)
        return 2
    ds = spec.loader(root=args.root, image_size=task.image_size, n_images=args.images, seed=0,
                     split_salt=task.split_salt)
    out = args.out or os.path.join("docs", f"{spec.name}_grid.png")
    sample_grid(ds, task, out, per_cell=args.per_cell, title=f"{spec.name}\n({task.name})")
    print(out)
    return 0


def _listing(command: str) -> list[str]:
    if command == "tasks":
        from .tasks import TASKS

        return [f"{n:<28} {t.description}" for n, t in TASKS.items()]
    if command == "methods":
        from .generators import GENERATORS

        return [f"{n:<28} {g.description}" for n, g in GENERATORS.items()]
    if command == "datasets":
        from .data import DATASETS

        return [f"{n:<28} {'[embedded] ' if d.phantom else ''}{d.description}"
                for n, d in DATASETS.items()]
    from .profiles import PROFILES

    return [f"{n:<28} {p.description}" for n, p in PROFILES.items()]


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def summary(record: dict[str, Any]) -> str:
    gen = record["metrics"]["generation"]
    c = record["counts"]
    lines = [
        f"fairsynth-bench {record['method']} on {record['task']} "
        f"(profile {record['profile']}, seed {record['seed']})",
        f"  data      {c['data']} images"
        + (f", train {c['train']}" if "train" in c else "")
        + f", test {c['test']}; synthetic {c['synthetic']}"
        + (f" (plan {c['plan_total']} in {c['plan_cells']} cells)" if "plan_total" in c else ""),
    ]
    f = gen["fid"]
    lines.append(
        f"  FID       {_fmt(f['value'])}  [{f['n_real']} real vs {f['n_synthetic']} synthetic, "
        f"{gen['feature_extractor']['name']}]" + (f"  ({f['reason']})" if f.get("reason") else "")
    )
    for attr, groups in gen["fid_by_group"].items():
        parts = ", ".join(f"{g} {_fmt(r['value'])} ({r['n_real']}/{r['n_synthetic']})"
                          for g, r in groups.items())
        lines.append(f"  FID by {attr}: {parts}; variance {_fmt(gen['fid_variance'][attr])}")
    lines.append(f"  time      {record['timings_s'].get('total', 0):.0f} s")
    if "_path" in record:
        lines.append(f"  record    {record['_path']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "datasets" and args.show is not None:
        try:
            return show_dataset(args)
        except UnknownNameError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if args.command in ("tasks", "methods", "datasets", "profiles"):
        print("\n".join(_listing(args.command)))
        return 0
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()  # our own tqdm bars show the stages that take time
    from .generators import GENERATORS
    from .profiles import PROFILES
    from .runner import evaluate_folder, run
    from .tasks import TASKS

    try:
        TASKS.get(args.task)
        PROFILES.get(args.profile)
        if args.command == "run":
            GENERATORS.get(args.method)
    except UnknownNameError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            record = run(method=args.method, task=args.task, profile=args.profile,
                         seed=args.seed, out=args.out, root=args.root, progress=not args.quiet)
        else:
            record = evaluate_folder(task=args.task, synthetic_dir=args.synthetic,
                                     profile=args.profile, seed=args.seed, out=args.out,
                                     root=args.root, progress=not args.quiet)
    except (ValueError, FileNotFoundError, UnknownNameError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({k: v for k, v in record.items() if not k.startswith("_")}, indent=2))
    else:
        print(summary(record))
    return 0
