"""Command line: ``python -m leaderboard {validate SUBMISSION...,export SUBMISSION,build}``.

A rejected submission prints one ``rejected:`` line naming the problem and the command exits
with status 1; an accepted one prints ``accepted:`` with its status (``verified`` when the
re-scored images reproduce every metric, else ``self-reported`` and why).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m leaderboard",
                                     description="fairsynth-bench leaderboard: validate and "
                                                 "verify submissions.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("validate", help="check submissions; re-score their images",
                       description="Check each submission folder (schema, checksums, seeds, "
                                   "profile, metric ranges, headline metrics, config hashes) "
                                   "and re-score its images: 'verified' when every metric "
                                   "matches, else 'self-reported'.")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION")
    p.add_argument("--no-verify", action="store_true",
                   help="check only; do not re-score the images (status self-reported)")
    p.add_argument("--root", default=None, help="local copy of a real dataset, for re-scoring")
    p.add_argument("--json", action="store_true", help="print one JSON object per submission")

    p = sub.add_parser("export", help="an entry as Hugging Face eval-results metadata",
                       description="Print (or write) the model-index of a validated "
                                   "submission: one result per headline metric, mean over "
                                   "seeds, verified only after verification.")
    p.add_argument("submission", metavar="SUBMISSION")
    p.add_argument("--out", default=None, help="JSON file (default: print)")
    p.add_argument("--push", default=None, metavar="REPO_ID",
                   help="also upload it to this Hub dataset repository (needs the network)")

    p = sub.add_parser("build", help="build the static site (HTML + PNG plots)",
                       description="Validate every submission folder under --submissions and "
                                   "render one page per task and profile, ranked by the task's "
                                   "headline metrics, with method cards and plots.")
    p.add_argument("--out", default="site", help="site folder (replaced; default: site)")
    p.add_argument("--submissions", default=None,
                   help="folder of submission folders (default: leaderboard/submissions)")
    return parser


def export_command(args: argparse.Namespace) -> int:
    from benchmark.results import write_json_atomic

    from .export import model_index, push
    from .validate import SubmissionError

    try:
        index = model_index(args.submission)
        if args.out:
            write_json_atomic(args.out, index)
        else:
            print(json.dumps(index, indent=2))
        if args.push:
            name = os.path.basename(os.path.normpath(args.submission))
            print(push(index, args.push, path_in_repo=f"entries/{name}.json"))
    except SubmissionError as err:
        print(f"rejected: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


def build_command(args: argparse.Namespace) -> int:
    from .site import DEFAULT_SUBMISSIONS, build_site

    subs = args.submissions or DEFAULT_SUBMISSIONS
    if not os.path.isdir(subs):
        print(f"error: --submissions {subs} does not exist; expected a folder of submission "
              "folders", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        print(f"error: --out {args.out} is a file; expected a folder", file=sys.stderr)
        return 2
    summary = build_site(args.out, submissions=subs)
    print(f"site {args.out}: {summary['entries']} entr(ies) on {len(summary['pages'])} page(s)"
          f", {len(summary['rejected'])} submission(s) rejected")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import datasets

    datasets.disable_progress_bars()
    from .validate import (
        SELF_REPORTED,
        SubmissionError,
        validate_submission,
        verify_submission,
        write_verification,
    )

    if args.command == "build":
        return build_command(args)
    if args.command == "export":
        return export_command(args)
    status = 0
    for path in args.submissions:
        try:
            if args.no_verify:
                validate_submission(path)
                result = {"status": SELF_REPORTED, "reason": "not verified (--no-verify)"}
            else:
                result = verify_submission(path, root=args.root)
                write_verification(path, result)
        except SubmissionError as err:
            status = 1
            if args.json:
                print(json.dumps({"submission": path, "accepted": False, "reason": str(err)}))
            else:
                print(f"rejected: {err}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"submission": path, "accepted": True, **result}))
        else:
            why = f" ({result['reason']})" if result.get("reason") else ""
            print(f"accepted: {path}: {result['status']}{why}")
    return status
