"""Classifiers on frozen features (sklearn): k-nearest neighbours and gradient boosting.

Both return class probabilities with one column per task class, also for classes absent
from the training set (probability 0), so the fairness metrics see the task's classes.
"""

from __future__ import annotations

import numpy as np


def fit_predict_head(head: str, *, train_x: np.ndarray, train_y: np.ndarray,
                     test_x: np.ndarray, n_classes: int, seed: int, knn_k: int = 10,
                     threads: int | None = None) -> np.ndarray:
    """Fit ``head`` (``knn`` or ``gbdt``) on (train_x, train_y) and return test
    probabilities (N_test, n_classes).

    ``knn``: sklearn ``KNeighborsClassifier`` (Euclidean, uniform weights) on standardised
    features, k = min(knn_k, N_train). ``gbdt``: sklearn ``HistGradientBoostingClassifier``
    with ``random_state=seed`` and no early stopping (deterministic). ``threads`` caps the
    OpenMP/BLAS threads while fitting (None: the libraries' default); on a busy 2-core
    machine boosting ran 40x faster on one thread than on the default two.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _fit_predict(head, train_x=train_x, train_y=train_y, test_x=test_x,
                            n_classes=n_classes, seed=seed, knn_k=knn_k)


def _fit_predict(head: str, *, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 n_classes: int, seed: int, knn_k: int) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(train_x) == 0:
        raise ValueError(f"{head}: no training samples")
    present = np.unique(train_y)
    if head == "knn":
        model = make_pipeline(StandardScaler(),
                              KNeighborsClassifier(n_neighbors=min(knn_k, len(train_x))))
    elif head == "gbdt":
        model = HistGradientBoostingClassifier(random_state=seed, early_stopping=False)
    else:
        raise ValueError(f"unknown feature head {head!r}; valid: knn, gbdt")
    out = np.zeros((len(test_x), n_classes))
    if len(present) == 1:  # sklearn's boosting refuses one class; the answer is certain
        out[:, int(present[0])] = 1.0
        return out
    model.fit(train_x, train_y)
    out[:, model.classes_.astype(int)] = model.predict_proba(test_x)
    return out
