"""Few-shot learning curves: k labelled samples per class drawn from TRAIN ONLY.

A common bug in published few-shot probes is drawing the k shots from a pool that includes
validation (or test) samples. Here the sampler only ever receives the train split's labels and
returns indices into it; val and test never reach it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning


def sample_k_shot(y_train: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sorted indices into the train split: k per class (all of a class if it has fewer).

    y_train (n,) class indices, or (n, C) multi-hot: then for every class up to k of its
    positives are drawn, and the union is returned.
    """
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    cols = y_train.T if y_train.ndim == 2 else [y_train == c for c in np.unique(y_train)]
    for member in cols:
        rows = np.flatnonzero(member)
        chosen.append(rng.choice(rows, size=min(k, rows.size), replace=False))
    return np.unique(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.intp)


def few_shot_curve(build: Callable[[], object], X_train: np.ndarray, y_train: np.ndarray,
                   X_test: np.ndarray, y_test: np.ndarray, *, ks: list[int], seeds: int,
                   score: Callable[[object, np.ndarray, np.ndarray], float],
                   metric: str, base_seed: int = 0) -> dict:
    """Fit ``build()`` on k-shot subsets of (X_train (n, D), y_train) for each k and seed and
    score it with ``score(model, X_test, y_test)``.

    ks larger than every class's train count add nothing new and are dropped (the last kept k
    already uses all of train). Returns {"k": [...], "mean": [...], "std": [...],
    "scores": [[per seed], ...], "n_train": [...], "seeds": seeds, "metric": metric}.
    """
    counts = y_train.sum(axis=0) if y_train.ndim == 2 else np.unique(y_train, return_counts=True)[1]
    max_count = int(counts.max()) if len(counts) else 0
    out = {"k": [], "mean": [], "std": [], "scores": [], "n_train": [], "seeds": seeds,
           "metric": metric}
    for k in ks:
        if out["k"] and out["k"][-1] >= max_count:
            break
        vals, sizes = [], []
        for s in range(seeds):
            idx = sample_k_shot(y_train, k, seed=base_seed * 1000 + s)
            model = build()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.filterwarnings("ignore", message="Label .*present in all training")
                model.fit(X_train[idx], y_train[idx])
            vals.append(float(score(model, X_test, y_test)))
            sizes.append(int(idx.size))
        out["k"].append(int(k))
        out["mean"].append(float(np.mean(vals)))
        out["std"].append(float(np.std(vals)))
        out["scores"].append(vals)
        out["n_train"].append(int(np.mean(sizes)))
    return out
