"""Probe registry: name -> how to build the classifier, which hyper-parameter is searched, and
over which default grid.

Every probe is saved as ``Pipeline([("normalize", ...), ("probe", classifier)])`` so the
feature normalisation (``standard`` | ``l2`` | ``none``) travels with the model and
``joblib.load(path).predict(X)`` works on raw (n, D) embeddings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler
from sklearn.svm import LinearSVC

from .knn import CosineKNNClassifier

NORMALIZATIONS: tuple[str, ...] = ("standard", "l2", "none")


@dataclass(frozen=True)
class ProbeSpec:
    """How to build one probe.

    ``build(value, options, seed)`` returns the unfitted classifier with the searched
    hyper-parameter ``param`` set to ``value``. ``log_scale`` says the grid is geometric (C) and
    may be refined between grid points; ``warm_start`` says a grid fit may start from the solution at
    the nearest value already fitted (a copy of that estimator, ``set_params``, ``fit``).
    """

    name: str
    tasks: tuple[str, ...]
    param: str
    default_grid: tuple[float, ...]
    build: Callable[[Any, dict, int], BaseEstimator]
    log_scale: bool
    warm_start: bool
    default_normalize: str


def _logreg(value: float, opts: dict, seed: int, warm: bool = False) -> BaseEstimator:
    if opts.get("solver") == "torch":
        from .torch_lbfgs import TorchLogisticRegression   # imports torch only when fitting
        return TorchLogisticRegression(C=float(value), max_iter=opts["max_iter"], tol=opts["tol"],
                                       class_weight=opts["class_weight"], warm_start=warm,
                                       device=opts["device"])
    # lbfgs on >2 classes minimises the multinomial loss; it keeps float32 input as float32.
    return LogisticRegression(C=float(value), solver="lbfgs", max_iter=opts["max_iter"],
                              tol=opts["tol"], class_weight=opts["class_weight"],
                              random_state=seed, warm_start=warm)


def _svm(value: float, opts: dict, seed: int) -> LinearSVC:
    # liblinear makes its own float64 copy per fit; there is no float32 path in sklearn.
    return LinearSVC(C=float(value), max_iter=opts["max_iter"], tol=opts["tol"],
                     class_weight=opts["class_weight"], random_state=seed)


C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 2, 13))
K_GRID: tuple[int, ...] = (1, 5, 10, 20, 50, 100)

PROBES: dict[str, ProbeSpec] = {
    "logreg": ProbeSpec("logreg", ("multiclass",), "C", C_GRID,
                        lambda v, o, s: _logreg(v, o, s, warm=True), True, True, "standard"),
    "linear_svm": ProbeSpec("linear_svm", ("multiclass",), "C", C_GRID, _svm, True, False,
                            "standard"),
    "knn": ProbeSpec("knn", ("multiclass",), "n_neighbors", K_GRID,
                     lambda v, o, s: CosineKNNClassifier(n_neighbors=int(v),
                                                         temperature=o["temperature"]),
                     False, False, "none"),
    # OneVsRestClassifier clones its estimator on every fit, so no warm start across the grid.
    "ovr_logreg": ProbeSpec("ovr_logreg", ("multilabel", "multiclass"), "C", C_GRID,
                            lambda v, o, s: OneVsRestClassifier(_logreg(v, o, s)), True, False,
                            "standard"),
    "ovr_linear_svm": ProbeSpec("ovr_linear_svm", ("multilabel", "multiclass"), "C", C_GRID,
                                lambda v, o, s: OneVsRestClassifier(_svm(v, o, s)), True, False,
                                "standard"),
}


def get_probe(name: str, task: str | None = None) -> ProbeSpec:
    """The spec of probe ``name``; checks it supports ``task`` when given."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; choose one of {sorted(PROBES)}")
    spec = PROBES[name]
    if task is not None and task not in spec.tasks:
        alt = sorted(n for n, s in PROBES.items() if task in s.tasks)
        raise ValueError(f"probe {name!r} does not support {task} data; use one of {alt}")
    return spec


def make_normalizer(kind: str) -> BaseEstimator:
    """Unfitted normaliser for ``standard`` | ``l2`` | ``none``."""
    if kind == "standard":
        return StandardScaler()
    if kind == "l2":
        return Normalizer()
    if kind == "none":
        # Identity, kept as a named step so the choice is visible in the saved model; a plain
        # sklearn class, so the pickle loads without linprobe's own classes.
        return FunctionTransformer()
    raise ValueError(f"The 'normalize' option must be one of {NORMALIZATIONS}. Got {kind!r} instead.")


def normalize_fit_transform(kind: str, X_fit: np.ndarray, *others: np.ndarray,
                            inplace: bool = False):
    """Fit a normaliser on X_fit (n, D) and return (normaliser, X_fit', *others').

    Outputs are float32. With ``inplace=True`` the given arrays (which must be the caller's own
    float32 copies, e.g. fancy-indexed rows) are overwritten instead of copied, so a sweep over
    a 60k x 1280 matrix holds one transformed copy, never a float64 one.
    """
    norm = fit_scaler(X_fit) if kind == "standard" else make_normalizer(kind).fit(X_fit)
    out = []
    for X in (X_fit, *others):
        if kind != "none":
            X = norm.transform(X, copy=not (inplace and X.dtype == np.float32))
        out.append(np.asarray(X, dtype=np.float32))
    return (norm, *out)


def fit_scaler(X: np.ndarray, chunk_rows: int | None = None) -> StandardScaler:
    """A fitted StandardScaler equal to ``StandardScaler().fit(X)`` for X (n, D).

    sklearn's own fit upcasts the whole float32 matrix to float64 (measured: 2.3x the matrix
    in temporaries); here the float64 sums run over row chunks, so the extra memory is
    O(chunk_rows * D) whatever n is (default: chunks of ~2**20 values, 8 MiB in float64).
    """
    n, d = X.shape
    chunk_rows = chunk_rows or max(1, 2**20 // max(d, 1))
    total = np.zeros(d)
    for i in range(0, n, chunk_rows):
        total += X[i:i + chunk_rows].sum(axis=0, dtype=np.float64)
    mean = total / n
    sq = np.zeros(d)
    for i in range(0, n, chunk_rows):
        sq += np.square(X[i:i + chunk_rows] - mean).sum(axis=0)
    var = sq / n
    scaler = StandardScaler()
    scaler.mean_, scaler.var_ = mean, var
    # sklearn's rule for (near-)constant features: their scale is 1, not ~0.
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scaler.scale_ = np.where(constant, 1.0, np.sqrt(var))
    scaler.n_samples_seen_ = n
    scaler.n_features_in_ = d
    return scaler


def assemble(normalizer: BaseEstimator, classifier: BaseEstimator) -> Pipeline:
    """The saved model: fitted normaliser + fitted classifier."""
    return Pipeline([("normalize", normalizer), ("probe", classifier)])
