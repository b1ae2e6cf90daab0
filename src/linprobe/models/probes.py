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
    may be refined between grid points; ``warm_start`` says consecutive grid fits may reuse the
    previous solution (same object, ``set_params``).
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


def normalize_fit_transform(kind: str, X_fit: np.ndarray, *others: np.ndarray):
    """Fit a normaliser on X_fit (n, D) and return (normaliser, X_fit', *others').

    Each output is a new float32 array (one copy per matrix, never a float64 one), so the
    caller's arrays are untouched and the grid search can reuse the transformed matrices.
    """
    norm = make_normalizer(kind).fit(X_fit)
    out = []
    for X in (X_fit, *others):
        Xt = norm.transform(X) if kind != "none" else X
        out.append(np.asarray(Xt, dtype=np.float32))
    return (norm, *out)


def assemble(normalizer: BaseEstimator, classifier: BaseEstimator) -> Pipeline:
    """The saved model: fitted normaliser + fitted classifier."""
    return Pipeline([("normalize", normalizer), ("probe", classifier)])
