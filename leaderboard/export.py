"""An entry as Hugging Face eval-results metadata (``model-index``), and pushing it to the Hub.

:func:`model_index` turns a validated submission into the ``model-index`` list of a model
card (built with ``huggingface_hub``'s ``EvalResult`` and ``eval_results_to_model_index``):
one result per headline metric of the task, the mean over seeds as the value, sd, 95%
t-interval and seeds in ``metric_args``, and ``verified: true`` only when the leaderboard's
verification re-produced every number (Hugging Face's rule: verified means the platform
computed it). :func:`push` uploads that JSON to a Hub dataset repository; offline it fails
with one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchmark.headline import headline_value
from benchmark.sweep import seed_interval

from .validate import VERIFIED, validate_submission, verification_status

TASK_TYPE = "image-generation"


def model_index(submission: str | Path, *, allow_smoke: bool = False) -> list[dict[str, Any]]:
    """The ``model-index`` of a submission (raises ``SubmissionError`` when it is rejected)."""
    from huggingface_hub import EvalResult
    from huggingface_hub.repocard_data import eval_results_to_model_index

    from benchmark.tasks import TASKS

    checked = validate_submission(submission, allow_smoke=allow_smoke)
    m = checked["manifest"]
    status, _ = verification_status(submission)
    records = [checked["records"][s] for s in sorted(checked["records"])]
    results = []
    for key in TASKS.get(m["task"]).headline_metrics:
        s = seed_interval([headline_value(r["metrics"], key) for r in records])
        results.append(EvalResult(
            task_type=TASK_TYPE, task_name="fairness-aware medical image synthesis",
            dataset_type=f"fairsynth-bench/{m['task']}", dataset_name=m["task"],
            dataset_config=m["profile"], dataset_split="test", metric_type=key,
            metric_name=key, metric_value=s["mean"],
            metric_args={"sd": s["sd"], "ci_low": s["ci_low"], "ci_high": s["ci_high"],
                         "level": s["level"], "seeds": sorted(checked["records"]),
                         "benchmark_version": m["benchmark"]["version"]},
            verified=status == VERIFIED))
    return eval_results_to_model_index(m["method"], results)


def push(index: list[dict[str, Any]], repo_id: str, *, path_in_repo: str) -> str:
    """Upload ``index`` as JSON to the Hub dataset ``repo_id``; returns the commit URL. Offline
    (``HF_HUB_OFFLINE``) or on any Hub error: a ValueError with one line."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ValueError("--push: offline (HF_HUB_OFFLINE is set); unset it and log in "
                         "(hf auth login) to push to the Hub")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        info = HfApi().upload_file(path_or_fileobj=json.dumps(index, indent=2).encode(),
                                   path_in_repo=path_in_repo, repo_id=repo_id,
                                   repo_type="dataset",
                                   commit_message=f"fairsynth-bench entry {path_in_repo}")
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError, ValueError) as err:
        raise ValueError(f"--push {repo_id}: {' '.join(str(err).split())[:200]}") from None
    return str(info)
