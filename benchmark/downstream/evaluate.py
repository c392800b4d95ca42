"""The downstream stage: classifiers trained on real, real + synthetic and synthetic-only
images, scored on the real test split for accuracy, AUC and fairness per sensitive attribute.

Training sets (:data:`~benchmark.downstream.config.TRAIN_SETS`):

- ``real``: the task's real training split (the reference row every method is compared to);
- ``real+synthetic``: the real training split plus the run's synthetic images (all of them,
  or ``synthetic_ratio`` x the real count, drawn with the seed);
- ``synthetic``: synthetic images only. Its test accuracy is the classification accuracy
  score (CAS; Ravuri & Vinyals, 2019): how well a generator's class-conditional samples
  teach a classifier the real classes.

Every classifier uses the real validation split for early stopping, and the real test split
for its scores. A classifier's result is written to ``<work_dir>/<train set>__<model>.json``
under a key of all its inputs, so a re-run skips the finished ones and a killed training
resumes from its per-epoch checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ..metrics.fairness import disaggregate, fairness_report
from ..metrics.saliency import KEY_SDM
from ..results import write_json_atomic
from ..tasks import Task
from .classifier import (
    ArrayData,
    _normalizer,
    _save_atomic,
    build_backbone,
    images_to_array,
    train_classifier,
)
from .config import DownstreamConfig
from .heads import fit_predict_head
from .sdm import SaliencyClassifier, saliency_diversity_by_class

log = logging.getLogger(__name__)

#: Bump when a change here changes downstream results (invalidates stored classifier results).
DOWNSTREAM_CODE_VERSION = "1"


def _load_weights(path: Path, key: str, *, backbone: str, n_classes: int, in_chans: int,
                  size: int, device: str) -> SaliencyClassifier | None:
    """The classifier whose best weights were stored at ``path`` for ``key`` (else None)."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, ValueError) as err:
        log.warning("ignoring unreadable classifier weights %s (%s)", path, err)
        return None
    if saved.get("key") != key:
        return None
    model = build_backbone(backbone, n_classes=n_classes, in_chans=in_chans, image_size=size,
                           pretrained=False)
    model.load_state_dict(saved["model"])
    return SaliencyClassifier(model.to(device), _normalizer(model, in_chans), device)


def task_arrays(ds: datasets.Dataset, task: Task, size: int, *, what: str,
                progress: bool = False) -> ArrayData:
    """Images, class indices and subgroup keys of ``ds`` for ``task`` (the subgroup key is
    the grouper's stratum, e.g. ``"female|40-59"``: the cell the reweighting weights).

    Raises ValueError naming the findings outside the task (callers filter those first).
    """
    cells = task.cell_keys(ds)
    outside = Counter(f for (_, cls), f in zip(cells, ds["finding"], strict=True) if cls is None)
    if outside:
        raise ValueError(f"{what}: finding(s) {dict(outside)} are not classes of task "
                         f"{task.name}; expected {', '.join(task.classes)}")
    labels = np.array([task.classes.index(cls) for _, cls in cells], dtype=np.int64)
    groups = np.array(task.grouper.labels(ds, what=what).strata, dtype=object)
    images = images_to_array(ds["image"], channels=task.channels, size=size,
                             progress=progress, desc=f"decoding {what}")
    return ArrayData(images, labels, groups)


def _load_result(path: Path, key: str) -> dict[str, Any] | None:
    """A stored classifier result when ``path`` holds one for ``key`` (else None)."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable downstream result %s (%s)", path, err)
        return None
    return stored["result"] if stored.get("key") == key else None


def _seeded_subset(n_total: int, n: int, seed: int) -> np.ndarray:
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def _score(proba: np.ndarray, test: datasets.Dataset, test_arr: ArrayData, task: Task,
           config: DownstreamConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    overall = disaggregate(y_true=test_arr.labels, y_score=proba, sensitive=["all"] * len(proba),
                           classes=task.classes, min_group_size=1).overall
    scores = {"n": overall.n, "accuracy": overall.accuracy, "auc": overall.auc,
              "auc_reason": overall.auc_reason}
    labels = task.grouper.labels(test, what="real test").by_grouping
    fairness = {attr: fairness_report(y_true=test_arr.labels, y_score=proba,
                                      sensitive=labels[attr], classes=task.classes,
                                      attribute=attr, min_group_size=config.min_group_size)
                for attr in task.sensitive_attributes}
    return scores, fairness


def _inception_features(ds: datasets.Dataset, task: Task, extractor: Any, cache: Any,
                        batch_size: int, progress: bool) -> np.ndarray:
    mode = "L" if task.channels == 1 else "RGB"
    arrays = [np.asarray(img.convert(mode)) for img in ds["image"]]
    return extractor.extract(arrays, cache=cache, batch_size=batch_size, progress=progress)


def downstream_metrics(
    *,
    train: datasets.Dataset,
    val: datasets.Dataset,
    test: datasets.Dataset,
    synthetic: datasets.Dataset | None,
    task: Task,
    config: DownstreamConfig,
    seed: int = 0,
    work_dir: str | Path,
    device: str = "cpu",
    extractor: Any = None,
    cache: Any = None,
    feature_batch_size: int = 24,
    progress: bool = True,
    shared_dir: str | Path | None = None,
    sdm_prefer_ids: Collection[str] | None = None,
) -> dict[str, Any]:
    """Train and score every downstream classifier of ``config``; a JSON-ready dict::

        {"config", "counts", "classifiers": {"<set>/<model>": {...}}, "cas": {model: acc},
         "skipped": {"<set>/<model>": reason}}

    ``extractor`` (a :class:`~benchmark.metrics.FeatureExtractor`, e.g. InceptionV3FID) is
    needed only for ``config.feature_heads``. With ``shared_dir``, the results of the
    ``real`` classifiers (which do not depend on the method) are also stored there as
    ``<key>.json`` and reused by every later run with the same inputs.
    ``sdm_prefer_ids``: ``sample_id`` values of the synthetic images the generation metrics
    scored; the saliency diversity metric draws its generated set from them first.
    """
    work_dir = Path(work_dir)
    size = config.image_size or task.image_size
    synthetic = synthetic if synthetic is not None else train.select([])
    real_arr = task_arrays(train, task, size, what="real train", progress=progress)
    val_arr = task_arrays(val, task, size, what="real val", progress=progress)
    test_arr = task_arrays(test, task, size, what="real test", progress=progress)
    n_syn = len(synthetic)
    if config.synthetic_ratio is not None:
        wanted = round(config.synthetic_ratio * len(train))
        if wanted > n_syn:
            log.info("downstream: synthetic_ratio asks for %d synthetic images, %d exist; "
                     "using all", wanted, n_syn)
        syn_idx = _seeded_subset(n_syn, wanted, seed + 2)
    else:
        syn_idx = np.arange(n_syn)
    syn_used = synthetic.select(syn_idx.tolist())
    syn_arr = task_arrays(syn_used, task, size, what="synthetic", progress=progress)
    sets: dict[str, ArrayData | None] = {
        "real": real_arr,
        "real+synthetic": ArrayData.concat([real_arr, syn_arr]) if len(syn_arr) else None,
    }
    set_rows: dict[str, list[datasets.Dataset]] = {"real": [train],
                                                   "real+synthetic": [train, syn_used]}
    if config.cas:
        sets["synthetic"] = syn_arr if len(syn_arr) else None
        set_rows["synthetic"] = [syn_used]
    models = [*config.backbones, *config.feature_heads]
    out: dict[str, Any] = {
        "config": config.as_dict(),
        "counts": {"train_real": len(train), "synthetic_available": n_syn,
                   "synthetic_used": len(syn_used), "val": len(val), "test": len(test),
                   "image_size": size},
        "classifiers": {},
        "cas": {},
        "skipped": {},
    }
    digests = {"val": val_arr.digest(), "test": test_arr.digest()}
    feats: dict[str, np.ndarray] = {}
    # the saliency diversity metric's classifier: the first backbone trained on real images
    sdm_model = config.backbones[0] if config.saliency_diversity and config.backbones else None
    sdm_clf: SaliencyClassifier | None = None
    for set_name, arr in sets.items():
        for model in models:
            name = f"{set_name}/{model}"
            if arr is None:
                out["skipped"][name] = "no synthetic images"
                if set_name == "synthetic":
                    out["cas"][model] = None
                continue
            key = hashlib.sha256(json.dumps({
                "code": DOWNSTREAM_CODE_VERSION, "config": config.as_dict(), "seed": seed,
                "model": model, "train": arr.digest(), **digests,
                "classes": list(task.classes), "attributes": list(task.sensitive_attributes),
            }, sort_keys=True).encode()).hexdigest()
            stem = f"{set_name.replace('+', '_plus_')}__{model}"
            path = work_dir / f"{stem}.json"
            shared = (Path(shared_dir) / f"{key}.json"
                      if shared_dir is not None and set_name == "real" else None)
            stored = _load_result(path, key) or (_load_result(shared, key) if shared else None)
            keep = set_name == "real" and model == sdm_model
            weights = (shared or path).with_suffix(".weights.pt") if keep else None
            if stored is not None and weights is not None:
                sdm_clf = _load_weights(weights, key, backbone=model,
                                        n_classes=len(task.classes),
                                        in_chans=int(real_arr.images.shape[1]), size=size,
                                        device=device)
                if sdm_clf is None:
                    log.info("downstream: %s finished earlier but its weights (for the "
                             "saliency diversity metric) are not at %s; training it again",
                             name, weights)
                    stored = None
            if stored is not None:
                log.info("downstream: %s finished earlier (%s)", name, path)
                out["classifiers"][name] = stored
                if set_name == "synthetic":
                    out["cas"][model] = stored["test"]["accuracy"]
                if _load_result(path, key) is None:  # found in the shared cache
                    write_json_atomic(path, {"key": key, "result": stored})
                continue
            t0 = time.perf_counter()
            result: dict[str, Any] = {
                "train_set": set_name, "model": model, "n_train": len(arr),
                "train_class_counts": {task.classes[c]: int(np.sum(arr.labels == c))
                                       for c in range(len(task.classes))},
            }
            if model in config.feature_heads:
                if extractor is None:
                    raise ValueError(f"feature head {model!r} needs a feature extractor")
                for part in ("real", "synthetic", "test"):
                    if part not in feats:
                        src = {"real": train, "synthetic": syn_used, "test": test}[part]
                        feats[part] = _inception_features(src, task, extractor, cache,
                                                          feature_batch_size, progress)
                parts = {"real": ["real"], "real+synthetic": ["real", "synthetic"],
                         "synthetic": ["synthetic"]}[set_name]
                train_x = np.concatenate([feats[p] for p in parts])
                proba = fit_predict_head(model, train_x=train_x, train_y=arr.labels,
                                         test_x=feats["test"], n_classes=len(task.classes),
                                         seed=seed, knn_k=config.knn_k,
                                         threads=config.cpu_threads)
                result["kind"] = model
                result["features"] = getattr(extractor, "name", str(extractor))
            else:
                log.info("downstream: training %s on %d images", name, len(arr))
                clf = train_classifier(train=arr, val=val_arr, n_classes=len(task.classes),
                                       backbone=model, config=config, seed=seed,
                                       work_dir=work_dir / stem, device=device,
                                       progress=progress)
                proba = clf.predict_proba(test_arr.images)
                if weights is not None:
                    _save_atomic({"key": key, "model": clf.model.state_dict()}, weights)
                    sdm_clf = SaliencyClassifier(clf.model, clf.norm, clf.device)
                result["kind"] = "cnn"
                result["training"] = {"best_epoch": clf.best_epoch,
                                      "best_val_accuracy": clf.best_val_accuracy,
                                      "epochs_run": clf.epochs_run, "history": clf.history,
                                      "reweight": config.reweight}
            result["test"], result["fairness"] = _score(proba, test, test_arr, task, config)
            result["time_s"] = round(time.perf_counter() - t0, 3)
            write_json_atomic(path, {"key": key, "result": result})
            # the result is stored: the training checkpoint (large at paper scale) is done with
            (work_dir / stem / "checkpoint.pt").unlink(missing_ok=True)
            if shared is not None:
                write_json_atomic(shared, {"key": key, "result": result})
            out["classifiers"][name] = result
            if set_name == "synthetic":
                out["cas"][model] = result["test"]["accuracy"]
    if sdm_model is not None:
        if len(syn_arr) == 0:
            out[KEY_SDM] = {"by_class": {}, "mean_score": None, "reason": "no synthetic images"}
        else:
            assert sdm_clf is not None
            out[KEY_SDM] = saliency_diversity_by_class(
                classifier=sdm_clf, task=task, synthetic=syn_used, synthetic_arr=syn_arr,
                test=test, test_arr=test_arr, val=val, val_arr=val_arr, extractor=extractor,
                cache=cache, images_per_class=config.sdm_images_per_class, seed=seed,
                batch_size=feature_batch_size, cpu_threads=config.cpu_threads,
                progress=progress, prefer_ids=sdm_prefer_ids)
    return out
