"""Multi-seed sweeps: every (method, task, seed) as a resumable run, then an aggregate over seeds.

``python -m benchmark sweep --methods A B --tasks T --seeds 0 1 2 --profile P --out DIR``
runs each job in its ordinary run folder (``DIR/<task>/<method>/<profile>-seed<seed>/``, the
one ``benchmark run`` uses), so a killed sweep continues where it stopped: a job whose
``result.json`` is a complete record of the config in its ``config.json`` (same code version)
is reused, any other job runs again and resumes from its certified stages
(:mod:`benchmark.runner`).

Jobs go through an executor: ``local`` (this process, one job after the other) or
``submitit`` (one job per run through `submitit <https://github.com/facebookincubator/submitit>`_:
``submitit-local`` starts local processes, ``slurm`` submits to a SLURM cluster; the same
code path). The aggregate (``DIR/sweep.json``, written atomically and last) holds, per
(task, method) and per metric, the mean, the sample standard deviation (ddof 1) and the 95%
Student-t interval over seeds (:func:`seed_interval`). It depends only on the records'
metrics, so a killed and resumed sweep ends with the same aggregate as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .headline import flatten_metrics
from .results import code_version, config_hash, validate_record, write_json_atomic

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
SWEEP_VERSION = "0.1.0"
LEVEL = 0.95
EXECUTORS = ("local", "submitit-local", "slurm")


def seed_interval(values: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """Mean, sample standard deviation and Student-t interval of per-seed values.

    ``mean = sum(x) / n``; ``sd = sqrt(sum((x - mean)^2) / (n - 1))`` (ddof 1);
    ``interval = mean -+ t_{(1 + level) / 2, n - 1} * sd / sqrt(n)`` (the t interval for a
    mean with unknown variance, e.g. Wasserman, *All of Statistics*, 2004, sec. 10.3; the
    replicate reporting of WILDS, Koh et al., ICML 2021). ``None`` entries (a metric
    undefined for a seed) are left out and counted in ``n_missing``; with fewer than two
    values, ``sd`` and the interval are ``None``.
    """
    from scipy import stats

    xs = [float(v) for v in values if v is not None]
    n = len(xs)
    out: dict[str, Any] = {"n": n, "n_missing": len(values) - n, "mean": None, "sd": None,
                           "ci_low": None, "ci_high": None, "level": level}
    if n == 0:
        return out
    mean = math.fsum(xs) / n
    out["mean"] = mean
    if n >= 2:
        sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
        half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
        out.update(sd=sd, ci_low=mean - half, ci_high=mean + half)
    return out


@dataclass(frozen=True)
class Job:
    """One run of a sweep (plain data: it travels to a submitit worker by pickling)."""

    method: str
    task: str
    profile: str
    seed: int
    out: str
    root: str | None = None

    @property
    def run_dir(self) -> Path:
        from .runner import run_dir_for

        return run_dir_for(self.out, self.task, self.method, self.profile, self.seed)

    @property
    def label(self) -> str:
        return f"{self.method} on {self.task} ({self.profile}, seed {self.seed})"


def finished_record(job: Job) -> dict[str, Any] | None:
    """The job's record when its run folder holds a finished run of this code: a complete
    ``result.json`` of this method, task, profile and seed whose config is the folder's
    ``config.json`` and whose code version is this one; None otherwise (the job runs)."""
    rdir = job.run_dir
    try:
        record = json.loads((rdir / "result.json").read_text())
        config = json.loads((rdir / "config.json").read_text())
        validate_record(record)
    except (OSError, ValueError):
        return None
    same = (record["method"], record["task"], record["profile"], record["seed"]) == (
        job.method, job.task, job.profile, job.seed)
    if not same or record["config_hash"] != config_hash(config) or \
            config.get("code") != code_version():
        return None
    return record


def run_job(job: Job) -> str:
    """Run (or reuse) one job; returns the path of its ``result.json``. The function a
    submitit worker calls."""
    if finished_record(job) is None:
        from .runner import run

        run(method=job.method, task=job.task, profile=job.profile, seed=job.seed, out=job.out,
            root=job.root, progress=False)
    return str(job.run_dir / "result.json")


def _run_local(jobs: Sequence[Job], done: Callable[[Job], None], **_: Any) -> None:
    for job in jobs:
        run_job(job)
        done(job)


def _run_submitit(jobs: Sequence[Job], done: Callable[[Job], None], *, cluster: str,
                  folder: Path, parallel: int, timeout_min: int,
                  parameters: dict[str, Any] | None = None) -> None:
    """One submitit job per run, at most ``parallel`` in flight; a failed job's error (with
    the path of its log) is raised as a RuntimeError."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(timeout_min=timeout_min, name="fairsynth-sweep",
                               **(parameters or {}))
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            running.append((job, executor.submit(run_job, job)))
        still = []
        for job, handle in running:
            if not handle.done():
                still.append((job, handle))
                continue
            try:
                handle.result()
            except Exception as err:  # the worker's failure, with its log's location
                for _, other in still + running:
                    if not other.done():
                        other.cancel()
                raise RuntimeError(f"{job.label} failed in submitit job {handle.job_id} "
                                   f"(logs in {folder}): {str(err).splitlines()[-1][:300]}"
                                   ) from None
            done(job)
        running = still
        if running:
            time.sleep(1.0)


def expand_jobs(methods: Iterable[str], tasks: Iterable[str], seeds: Iterable[int], profile: str,
                out: str | Path, root: str | Path | None = None) -> list[Job]:
    """Every (task, method, seed), in that order; duplicates are errors."""
    methods, tasks, seeds = list(methods), list(tasks), list(seeds)
    for name, values in (("--methods", methods), ("--tasks", tasks), ("--seeds", seeds)):
        if not values:
            raise ValueError(f"{name}: expected at least one value")
        dup = sorted({str(v) for v in values if values.count(v) > 1})
        if dup:
            raise ValueError(f"{name}: {', '.join(dup)} given more than once")
    return [Job(m, t, profile, s, str(out), None if root is None else str(root))
            for t in tasks for m in methods for s in seeds]


def aggregate(records: Sequence[dict[str, Any]], *, out: str | Path | None = None
              ) -> dict[str, Any]:
    """The sweep aggregate of ``records``: one entry per (task, method, profile), with its
    runs (seed, config hash, record path relative to ``out``) and every metric of
    :func:`benchmark.headline.flatten_metrics` summarised by :func:`seed_interval`.
    Deterministic: no timings, no timestamps."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["task"], rec["method"], rec["profile"]), []).append(rec)
    entries = []
    for (task, method, profile), recs in sorted(groups.items()):
        recs = sorted(recs, key=lambda r: r["seed"])
        flat = [flatten_metrics(r["metrics"]) for r in recs]
        keys = sorted(set().union(*flat))
        runs = []
        for r in recs:
            path = r.get("_path")
            if path is not None and out is not None:
                path = Path(path).resolve().relative_to(Path(out).resolve()).as_posix()
            runs.append({"seed": r["seed"], "config_hash": r["config_hash"],
                         "dataset_fingerprint": r["dataset_fingerprint"], "record": path})
        entries.append({
            "task": task, "method": method, "profile": profile,
            "seeds": [r["seed"] for r in recs], "runs": runs,
            "metrics": {k: {**seed_interval([f.get(k) for f in flat]),
                            "values": [f.get(k) for f in flat]} for k in keys},
        })
    return {"sweep_version": SWEEP_VERSION, "level": LEVEL, "entries": entries}


def sweep(*, methods: Sequence[str], tasks: Sequence[str], seeds: Sequence[int], profile: str,
          out: str | Path = "runs", root: str | Path | None = None, executor: str = "local",
          parallel: int = 1, timeout_min: int = 24 * 60,
          parameters: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every job of the sweep through ``executor`` (see :data:`EXECUTORS`) and write the
    aggregate to ``out/sweep.json``; returns it. Names are checked before any work."""
    from tqdm.auto import tqdm

    from .generators import GENERATORS
    from .profiles import PROFILES
    from .runner import check_seed
    from .tasks import TASKS

    if executor not in EXECUTORS:
        raise ValueError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if parallel < 1:
        raise ValueError(f"--parallel must be >= 1, got {parallel}")
    PROFILES.get(profile)
    for t in tasks:
        TASKS.get(t)
    for m in methods:
        GENERATORS.get(m)
    for s in seeds:
        check_seed(s)
    jobs = expand_jobs(methods, tasks, seeds, profile, out, root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / SWEEP_FILE).unlink(missing_ok=True)  # an aggregate is only ever of a finished sweep
    todo = [j for j in jobs if finished_record(j) is None]
    log.info("sweep: %d run(s), %d already finished, %d to run (executor %s)", len(jobs),
             len(jobs) - len(todo), len(todo), executor)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="sweep", unit="run",
               disable=not progress)
    finished = [len(jobs) - len(todo)]

    def done(job: Job) -> None:
        finished[0] += 1
        bar.update(1)
        log.info("sweep: [%d/%d] %s finished", finished[0], len(jobs), job.label)

    try:
        if executor == "local":
            _run_local(todo, done)
        else:
            _run_submitit(todo, done, cluster="local" if executor == "submitit-local" else
                          "slurm", folder=out / ".submitit", parallel=parallel,
                          timeout_min=timeout_min, parameters=parameters)
    finally:
        bar.close()
    records = []
    for job in jobs:
        rec = finished_record(job)
        if rec is None:
            raise RuntimeError(f"{job.label}: no finished record in {job.run_dir} after its run")
        rec["_path"] = str(job.run_dir / "result.json")
        records.append(rec)
    agg = aggregate(records, out=out)
    agg["sweep"] = {"methods": list(methods), "tasks": list(tasks), "seeds": list(seeds),
                    "profile": profile}
    write_json_atomic(out / SWEEP_FILE, agg)
    return agg


__all__ = ["EXECUTORS", "Job", "aggregate", "expand_jobs", "finished_record",
           "run_job", "seed_interval", "sweep"]
