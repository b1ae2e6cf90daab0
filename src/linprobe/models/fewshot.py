"""Few-shot learning curves: k labelled samples per class drawn from TRAIN ONLY.

A common bug in published few-shot probes is drawing the k shots from a pool that includes
validation (or test) samples. Here the sampler only ever receives the train split's labels and
returns indices into it; val and test never reach it.

Cost: the fits are tiny (k x classes rows), so they run on one BLAS thread (a multi-threaded
BLAS spin-waits on such small products, 10-20x slower on a loaded machine); scoring the test
set is what streams data, so linear models are scored together in one pass (see
:func:`_linear_accuracy`).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits


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
                   metric: str, base_seed: int = 0, train_rows: np.ndarray | None = None,
                   batched: bool = True) -> dict:
    """Fit ``build()`` on k-shot subsets of (X_train (n, D), y_train) for each k and seed and
    score it with ``score(model, X_test, y_test)``.

    ``train_rows`` (n,): when given, X_train is a larger matrix (e.g. every split) and the train
    split is X_train[train_rows], y_train its labels; only the drawn rows are read (no copy of
    the whole train split). ``batched``: score linear models on accuracy in one pass over
    X_test (same predictions as ``score``, see :func:`_linear_accuracy`); False calls
    ``score`` per model.

    ks larger than every class's train count add nothing new and are dropped (the last kept k
    already uses all of train). Returns {"k": [...], "mean": [...], "std": [...],
    "scores": [[per seed], ...], "n_train": [...], "seeds": seeds, "metric": metric}.
    """
    counts = y_train.sum(axis=0) if y_train.ndim == 2 else np.unique(y_train, return_counts=True)[1]
    max_count = int(counts.max()) if len(counts) else 0
    kept: list[int] = []
    for k in ks:
        if kept and kept[-1] >= max_count:
            break
        kept.append(int(k))
    draws = [sample_k_shot(y_train, k, seed=base_seed * 1000 + s)
             for k in kept for s in range(seeds)]
    models = []
    with warnings.catch_warnings(), threadpool_limits(1), _one_torch_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Label .*present in all training")
        for idx in draws:
            rows = idx if train_rows is None else train_rows[idx]
            model = build()
            model.fit(X_train[rows], y_train[idx])
            models.append(model)
    vals = _linear_accuracy(models, X_test, y_test) if batched and metric == "accuracy" else None
    if vals is None:
        vals = [float(score(m, X_test, y_test)) for m in models]
    out = {"k": kept, "mean": [], "std": [], "scores": [], "n_train": [], "seeds": seeds,
           "metric": metric}
    for i in range(len(kept)):
        v = vals[i * seeds:(i + 1) * seeds]
        out["mean"].append(float(np.mean(v)))
        out["std"].append(float(np.std(v)))
        out["scores"].append([float(x) for x in v])
        out["n_train"].append(int(np.mean([d.size for d in draws[i * seeds:(i + 1) * seeds]])))
    return out


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch (when a torch solver already loaded it) on one thread for the tiny fits."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch is not None:
            torch.set_num_threads(threads)


def _linear_parts(model) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(W (D, K), b (K,), classes) with decision = X @ W + b on RAW X for a fitted
    ``Pipeline([standard scaler | identity, linear classifier])``; None for any other model."""
    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    norm, clf = model.steps[0][1], model.steps[1][1]
    coef, b = getattr(clf, "coef_", None), getattr(clf, "intercept_", None)
    classes = getattr(clf, "classes_", None)
    if coef is None or b is None or classes is None or hasattr(clf, "estimators_") \
            or np.ndim(coef) != 2 or coef.shape[0] != (1 if len(classes) == 2 else len(classes)):
        return None
    coef, b = np.asarray(coef, np.float64), np.broadcast_to(np.asarray(b, np.float64), coef.shape[:1])
    if isinstance(norm, StandardScaler):
        mean = norm.mean_ if norm.with_mean else np.zeros(coef.shape[1])
        scale = norm.scale_ if norm.with_std else np.ones(coef.shape[1])
        # ((X - mean) / scale) @ coef.T + b  ==  X @ (coef / scale).T + (b - (mean / scale) @ coef.T)
        return (coef / scale).T, b - (mean / scale) @ coef.T, classes
    if isinstance(norm, FunctionTransformer) and norm.func is None:
        return coef.T, b, classes
    return None


def _linear_accuracy(models: Sequence, X: np.ndarray, y: np.ndarray) -> list[float] | None:
    """Test accuracy of every model from ONE product X (n, D) @ [W_1 ... W_m]; None unless all
    are linear (:func:`_linear_parts`) and y (n,) holds class indices.

    Linear classifiers predict classes_[argmax of the decision values] (binary: classes_[1]
    where the single decision value is > 0), which is also the argmax of their
    probabilities, so this equals accuracy computed from ``predict_proba`` up to float32
    rounding of near-ties (the scaler is folded into the weights instead of applied to X)."""
    if np.ndim(y) != 1 or not models:
        return None
    parts = [_linear_parts(m) for m in models]
    if any(p is None for p in parts):
        return None
    W = np.concatenate([p[0] for p in parts], axis=1).astype(X.dtype if X.dtype == np.float32
                                                             else np.float64)
    D = X @ W                                    # (n, sum K): the one pass over X
    out, col = [], 0
    for W_i, b_i, classes in parts:
        d = D[:, col:col + W_i.shape[1]] + b_i
        col += W_i.shape[1]
        pred = classes[(d[:, 0] > 0).astype(int)] if d.shape[1] == 1 else classes[np.argmax(d, axis=1)]
        out.append(float(np.mean(pred == y)))
    return out
