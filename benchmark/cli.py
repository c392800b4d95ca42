"""Command line: ``python -m benchmark {run,evaluate,sweep,submit,report,tasks,...}``.

Choices come from the registries; an unknown name prints one line listing the valid names and
exits with status 2. Every other bad input (an option, a path, a file, row or column of the
data, a damaged file that cannot be redone) is also one ``error:`` line on stderr naming it,
and exit status 2; path options are checked before any work starts (README, "What is
validated").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .generators import OptionError, check_option_value
from .profiles import DEFAULT_PROFILE
from .registry import UnknownNameError
from .report.summary import summary
from .tasks import DEFAULT_TASK, TASKS

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


def _preset_help() -> str:
    """The tasks that declare per-class budget presets and their values, for ``--help``."""
    from .generators import describe_presets

    declared = [f"{n} {describe_presets(t.synthetic_per_class)}" for n, t in TASKS.items()
                if t.synthetic_per_class]
    return "; ".join(declared) or "none does"


def per_class_option(value: str | None) -> object:
    """``--synthetic-per-class`` as given: an int when it is written as one, else the text
    (which :func:`benchmark.generators.resolve_budget` rejects in one line)."""
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.lstrip("+-").isdigit() else value


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
    p.add_argument("--pretrained", default=None, metavar="PATH_OR_ID",
                   help="pretrained weights of a diffusion method (profile paper): a local "
                        "Stable Diffusion folder, or a hub id already in the local Hugging Face "
                        "cache; nothing is downloaded")
    p.add_argument("--allocation", default=None, metavar="STRATEGY",
                   help="allocation strategy: water-fill or majority-score (default: the "
                        "method's, water-fill for most)")
    p.add_argument("--synthetic-per-class", default=None, metavar="N",
                   help="synthetic budget: N images per class of the task, each class's spread "
                        "over its subgroup cells by the allocation strategy, instead of the "
                        "profile's ratio of the training set (N an integer >= 1; a task that "
                        f"declares presets takes only those: {_preset_help()})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                   help="a method option (repeatable; VALUE is read as JSON when it parses, "
                        "e.g. --set steps=200 --set prompt_style=task); unknown keys and "
                        "values of the wrong type are errors (exit 2)")
    _add_common(p)

    p = sub.add_parser("evaluate", help="score a folder of images against a task's real test set",
                       description="Score a folder of images with a metadata.csv (columns path, "
                                   "finding and the task's sensitive attributes) against the "
                                   "task's real test split. Use the profile the images were "
                                   "made for: the phantom's size depends on it.")
    p.add_argument("--synthetic", required=True, help="folder with metadata.csv and images")
    p.add_argument("--out", default=None,
                   help="folder for result.json (default: <synthetic>/../evaluation)")
    p.add_argument("--downstream", action="store_true",
                   help="also train the profile's downstream classifiers (real, real + these "
                        "images, these images only) and score accuracy, AUC, CAS and fairness "
                        "on the real test split")
    _add_common(p)

    p = sub.add_parser("sweep", help="run methods x tasks x seeds and aggregate over seeds",
                       description="Run every (method, task, seed) as a resumable run (a "
                                   "killed sweep continues) and write <out>/sweep.json: per "
                                   "metric the mean, sd (ddof 1) and 95%% t-interval over "
                                   "seeds.")
    p.add_argument("--methods", nargs="+", required=True, metavar="METHOD")
    p.add_argument("--tasks", nargs="+", default=[DEFAULT_TASK], metavar="TASK",
                   help=f"(default: {DEFAULT_TASK})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="SEED",
                   help="(default: 0 1 2)")
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"smoke, cpu, gpu or paper (default: {DEFAULT_PROFILE})")
    p.add_argument("--out", default="runs", help="output folder (default: runs)")
    p.add_argument("--root", default=None,
                   help="local copy of a real dataset (not needed for the phantoms)")
    p.add_argument("--executor", default="local", choices=("local", "submitit-local", "slurm"),
                   help="local: this process, one run after the other; submitit-local: one "
                        "local process per run through submitit; slurm: one SLURM job per "
                        "run through submitit (default: local)")
    p.add_argument("--parallel", type=int, default=1,
                   help="submitit jobs in flight at once (default: 1)")
    p.add_argument("--timeout-min", type=int, default=24 * 60,
                   help="submitit: time limit of one run in minutes (default: 1440)")
    p.add_argument("--slurm-partition", default=None, help="slurm: the partition")
    p.add_argument("--json", action="store_true", help="print the aggregate as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars or info logging")

    p = sub.add_parser("submit", help="package finished runs as a leaderboard submission",
                       description="Write a submission folder: the result records of every "
                                   "seed, a manifest with the sha256 of every synthetic image "
                                   "and metadata.csv, config hashes, dataset fingerprints, "
                                   "the benchmark version and code commit, and (unless "
                                   "--no-images) the images, which verification re-scores.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run folders (or folders above them, e.g. a sweep's --out)")
    p.add_argument("--out", required=True, help="submission folder (must not exist, or be empty)")
    p.add_argument("--no-images", action="store_true",
                   help="checksums only: the entry can only be self-reported")
    p.add_argument("--quiet", action="store_true", help="no info logging")

    p = sub.add_parser("report", help="an HTML report of one run or several side by side",
                       description="Write one self-contained HTML file: provenance, sample "
                                   "grids, per-subgroup FID / FD bars, a radar of per-group "
                                   "accuracy, a t-SNE of real and synthetic features, the "
                                   "downstream fairness table and adherence.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run folders")
    p.add_argument("--out", default="report.html", help="HTML file (default: report.html)")
    p.add_argument("--no-tsne", action="store_true", help="skip the t-SNE (faster)")
    p.add_argument("--quiet", action="store_true", help="no info logging")

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
            p.add_argument("--summary", metavar="NAME", default=None,
                           help="print the number of samples and the counts per split, finding "
                                "and attribute value (unknowns included) of a dataset")
            p.add_argument("--verify", action="store_true",
                           help="with --summary: decode every image (names any unreadable file)")
            p.add_argument("--json", action="store_true", help="with --summary: print JSON")
            p.add_argument("--write-split", metavar="FILE", default=None,
                           help="with --summary: write the loaded patient -> split assignment "
                                "as a split file (JSON with checksum) to share or ship")
            p.add_argument("--check-split", metavar="FILE", default=None,
                           help="with --summary: compare the loaded split with a split file "
                                "(counts of patients missing, extra, in another split)")
    return parser


def show_dataset(args: argparse.Namespace) -> int:
    """``datasets --show NAME``: write a sample grid PNG; returns the exit status."""
    from .data import DATASETS
    from .report import sample_grid

    spec = DATASETS.get(args.show)
    if args.per_cell < 1:
        print(f"error: --per-cell must be >= 1, got {args.per_cell}", file=sys.stderr)
        return 2
    if args.task is not None:
        task = TASKS.get(args.task)
    else:
        from .tasks import DEFAULT_TASK

        # the default task first, then the others on this dataset by name
        on_it = sorted((t for _, t in TASKS.items() if t.dataset == spec.name),
                       key=lambda t: (t.name != DEFAULT_TASK, t.name))
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


def summarize_dataset(args: argparse.Namespace) -> int:
    """``datasets --summary NAME --root DIR [--json] [--verify]``; returns the exit status."""
    from .data import DATASETS
    from .data.real import load_split_file, verify_images, write_split_file
    from .data.real._common import compare_split
    from .data.summary import format_summary, summarize
    from .schema import column

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec = DATASETS.get(args.summary)
    if not spec.phantom and args.root is None:
        print(f"error: dataset {spec.name!r} needs --root (layout: data_cards/{spec.card})",
              file=sys.stderr)
        return 2
    try:
        ds = spec.loader(root=args.root, image_size=64, n_images=args.images, seed=0,
                         split_salt="fairsynth")
        if args.verify:
            n = verify_images(ds)
            log.info("verified: all %d images decode", n)
        assignment = dict(zip(column(ds, "patient_id"), column(ds, "split"), strict=True))
        if args.write_split:
            write_split_file(args.write_split, dataset=spec.name, assignment=assignment,
                             method=f"exported from a local copy by the {spec.name} loader")
            log.info("wrote %s (%d patients)", args.write_split, len(assignment))
        differs = None
        if args.check_split:
            differs = compare_split(assignment, load_split_file(args.check_split))
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = summarize(ds)
    if differs is not None:
        result["split_check"] = {"file": args.check_split, **differs}
        if any(differs.values()):
            log.warning("split differs from %s: %s", args.check_split, differs)
    if args.json:
        print(json.dumps({"dataset": spec.name, **result}, indent=2))
    else:
        print(format_summary(spec.name, result))
    return 0


def _listing(command: str) -> list[str]:
    if command == "tasks":
        from .generators import describe_presets

        return [f"{n:<28} {t.description}"
                + (f" [synthetic per class: {describe_presets(t.synthetic_per_class)}]"
                   if t.synthetic_per_class else "")
                for n, t in TASKS.items()]
    if command == "methods":
        from .generators import GENERATORS

        return [f"{n:<28} {g.description}" for n, g in GENERATORS.items()]
    if command == "datasets":
        from .data import DATASETS

        return [f"{n:<28} {'[embedded] ' if d.phantom else ''}{d.description}"
                for n, d in DATASETS.items()]
    from .profiles import PROFILES

    return [f"{n:<28} {p.description}" for n, p in PROFILES.items()]


def method_options(args: argparse.Namespace, gen_cls: type | None = None) -> dict[str, Any]:
    """The method config given on the command line (``--set KEY=VALUE``, ``--pretrained``).

    VALUE is read as JSON when it parses (``3`` an int, ``1e-4`` a float, ``true`` a bool,
    ``null`` None); with ``gen_cls``, an option that takes a string keeps VALUE as written
    when its JSON reading is not one of the option's types (``--set group=1`` is ``"1"``).
    Types are checked by the generator (:meth:`benchmark.Generator.check_config`)."""
    out: dict[str, Any] = {}
    for item in args.options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if gen_cls is not None and key in gen_cls.default_config and parsed is not None:
            types, _ = gen_cls.option_type(key)
            if str in types and not isinstance(parsed, str):
                try:
                    check_option_value(key, key, parsed, types, nullable=False)
                except OptionError:
                    parsed = value
        out[key] = parsed
    if args.pretrained is not None:
        out["pretrained"] = args.pretrained
    return out


def check_run_options(args: argparse.Namespace) -> str | None:
    """Everything a ``run`` / ``evaluate`` command line can get wrong that is cheap to check,
    before any work starts: the seed and, for ``run``, the method's options (names, types,
    ranges; resolved against the profile) and the synthetic budget
    (``--synthetic-per-class``, against the task's presets). Returns the error line, or
    None."""
    from .generators import GENERATORS, resolve_budget
    from .profiles import PROFILES
    from .runner import check_seed

    try:
        check_seed(args.seed)
        if args.command == "run":
            gen_cls = GENERATORS.get(args.method)
            gen_cls(method_options(args, gen_cls)).resolve(PROFILES.get(args.profile))
            resolve_budget(TASKS.get(args.task), PROFILES.get(args.profile),
                           per_class_option(args.synthetic_per_class))
    except ValueError as err:
        return f"error: {err}"
    return None


def _folder_problem(option: str, path: str | None, *, must_exist: bool = False) -> str | None:
    """Why ``path`` cannot be the folder ``option`` names (None when it can)."""
    if path is None:
        return None
    p = os.path.abspath(path)
    if os.path.exists(p) and not os.path.isdir(p):
        return f"{option} {path} is a file; expected a folder"
    if must_exist and not os.path.isdir(p):
        return f"{option} {path} does not exist; expected a folder"
    parent = p
    while not os.path.exists(parent):  # the nearest existing ancestor must be a folder
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{option} {path}: {parent} is a file; expected a folder"
    return None


def _file_problem(option: str, path: str | None) -> str | None:
    """Why ``path`` cannot be written as the file ``option`` names (None when it can)."""
    if path is None:
        return None
    if os.path.isdir(path):
        return f"{option} {path} is a folder; expected a file name"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"{option} {path}: folder {parent} does not exist"
    return None


def check_paths(args: argparse.Namespace) -> str | None:
    """The first problem with the path options of ``args`` (one line), checked before any work
    starts; None when they are all usable."""
    if args.command in ("run", "evaluate"):
        checks = [_folder_problem("--out", args.out)]
        if args.command == "evaluate":
            checks.insert(0, _folder_problem("--synthetic", args.synthetic, must_exist=True))
            if args.out is None:  # the default, <synthetic>/../evaluation
                default = os.path.join(os.path.dirname(os.path.abspath(args.synthetic)),
                                       "evaluation")
                checks.append(_folder_problem("--out (default)", default))
    elif args.command == "report":
        checks = [_folder_problem("RUN_DIR", d, must_exist=True) for d in args.run_dirs]
        checks += [f"RUN_DIR {d} has no result.json; expected a finished run folder"
                   for d in args.run_dirs
                   if os.path.isdir(d) and not os.path.isfile(os.path.join(d, "result.json"))]
        checks.append(_file_problem("--out", args.out))
    elif args.command == "sweep":
        checks = [_folder_problem("--out", args.out)]
        if args.parallel < 1:
            checks.append(f"--parallel must be >= 1, got {args.parallel}")
    elif args.command == "submit":
        checks = [_folder_problem("RUN_DIR", d, must_exist=True) for d in args.run_dirs]
        checks.append(_folder_problem("--out", args.out))
        if os.path.isdir(args.out) and os.listdir(args.out):
            checks.append(f"--out {args.out} is not empty; expected a new submission folder")
    elif args.command == "datasets":
        # (--root is checked by the loader, whose message points at the data card)
        checks = [_file_problem("--write-split", args.write_split),
                  _file_problem("--out", args.out)]
        if args.check_split is not None and args.check_split.endswith(".json") and \
                not os.path.isfile(args.check_split):
            checks.append(f"--check-split {args.check_split} does not exist; expected a split "
                          "file (JSON)")
        if args.images < 1:
            checks.append(f"--images must be >= 1, got {args.images}")
    else:
        checks = []
    return next((c for c in checks if c is not None), None)


def sweep_command(args: argparse.Namespace) -> int:
    """``sweep``: run the jobs, write and print the aggregate; returns the exit status."""
    import datasets

    from .sweep import sweep

    datasets.disable_progress_bars()
    params = {"slurm_partition": args.slurm_partition} if args.slurm_partition else None
    try:
        agg = sweep(methods=args.methods, tasks=args.tasks, seeds=args.seeds,
                    profile=args.profile, out=args.out, root=args.root,
                    executor=args.executor, parallel=args.parallel,
                    timeout_min=args.timeout_min, parameters=params,
                    progress=not args.quiet)
    except (ValueError, OSError, UnknownNameError, RuntimeError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(agg, indent=2))
        return 0
    for e in agg["entries"]:
        print(f"{e['method']} on {e['task']} ({e['profile']}, seeds "
              f"{' '.join(map(str, e['seeds']))})")
        for key in TASKS.get(e["task"]).headline_metrics:
            m = e["metrics"].get(key)
            if m is None or m["mean"] is None:
                print(f"  {key:<52} n/a")
                continue
            sd = "n/a" if m["sd"] is None else f"{m['sd']:.4g}"
            ci = "" if m["ci_low"] is None else \
                f"  [{m['ci_low']:.4g}, {m['ci_high']:.4g}]"
            print(f"  {key:<52} {m['mean']:.4g} +- {sd}{ci}")
    print(f"aggregate  {os.path.join(args.out, 'sweep.json')}")
    return 0


def submit_command(args: argparse.Namespace) -> int:
    """``submit``: write a submission folder; returns the exit status."""
    from .submission import make_submission

    try:
        manifest = make_submission(args.run_dirs, args.out, images=not args.no_images)
    except (ValueError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(f"submission {args.out}: {manifest['method']} on {manifest['task']} "
          f"({manifest['profile']}), {len(manifest['entries'])} seed(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = check_paths(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.command == "datasets" and args.summary is not None:
        try:
            return summarize_dataset(args)
        except UnknownNameError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if args.command == "datasets" and args.show is not None:
        try:
            return show_dataset(args)
        except (UnknownNameError, ValueError, OSError) as err:
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
    if args.command == "sweep":
        return sweep_command(args)
    if args.command == "submit":
        return submit_command(args)
    if args.command == "report":
        from .report.html import write_report

        try:
            print(write_report(args.run_dirs, args.out, tsne=not args.no_tsne))
        except (ValueError, OSError) as err:
            print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        return 0
    import datasets

    datasets.disable_progress_bars()  # our own tqdm bars show the stages that take time
    from .generators import ALLOCATIONS, GENERATORS
    from .profiles import PROFILES
    from .runner import evaluate_folder, run

    try:
        TASKS.get(args.task)
        PROFILES.get(args.profile)
        if args.command == "run":
            GENERATORS.get(args.method)
            if args.allocation is not None:
                ALLOCATIONS.get(args.allocation)
    except UnknownNameError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    problem = check_run_options(args)
    if problem is not None:  # a bad seed or option: one line, before any work
        print(problem, file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            record = run(method=args.method, task=args.task, profile=args.profile,
                         seed=args.seed, out=args.out, root=args.root, progress=not args.quiet,
                         allocation=args.allocation,
                         synthetic_per_class=per_class_option(args.synthetic_per_class),
                         method_config=method_options(args, GENERATORS.get(args.method))
                         or None)
        else:
            record = evaluate_folder(task=args.task, synthetic_dir=args.synthetic,
                                     profile=args.profile, seed=args.seed, out=args.out,
                                     root=args.root, progress=not args.quiet,
                                     downstream=args.downstream)
    except (ValueError, OSError, UnknownNameError) as err:
        # bad input (a file, row, column or option named in one line) or a damaged file that
        # cannot be redone: exit 2, never a traceback
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: v for k, v in record.items() if not k.startswith("_")}, indent=2))
    else:
        print(summary(record))
    return 0
