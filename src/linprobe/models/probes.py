"""Probe registry: name -> how to build the classifier, the options class it accepts (which
also holds its searched hyper-parameter and default grid; see :mod:`.options`), the tasks it
supports.

Every probe is saved as ``Pipeline([("normalize", ...), ("probe", classifier)])`` so the
feature normalisation (``standard`` | ``l2`` | ``none``) travels with the model and
``joblib.load(path).predict(X)`` works on raw (n, D) embeddings.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
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
from .options import (NORMALIZATIONS, KnnOptions, LinearOptions, LogregOptions, OvrOptions,
                      ProbeOptions, SolverOptions, SvmOptions, options_from_dict)


@dataclass(frozen=True)
class ProbeSpec:
    """How to build one probe.

    ``build(value, options, seed)`` returns the unfitted classifier with the searched
    hyper-parameter ``param`` set to ``value``; ``options`` is an instance of the probe's options
    class ``options`` (which also declares the options the probe accepts, their defaults and its
    default grid). ``log_scale`` says the grid is geometric (C) and may be refined between grid
    points; ``warm_start`` says a grid fit may start from the solution at the nearest value
    already fitted (a copy of that estimator, ``set_params``, ``fit``).
    """

    name: str
    tasks: tuple[str, ...]
    options: type[ProbeOptions]
    build: Callable[[Any, Any, int], BaseEstimator]
    log_scale: bool
    warm_start: bool
    solver: str                # its scikit-learn fit, as the report names it (torch: "torch L-BFGS")

    @property
    def param(self) -> str:
        """The searched hyper-parameter (``C``, ``n_neighbors``)."""
        return self.options.searched


def _sklearn_logreg(value: float, opts: LinearOptions, seed: int,
                    warm: bool = False) -> BaseEstimator:
    # lbfgs on >2 classes minimises the multinomial loss; it keeps float32 input as float32.
    return LogisticRegression(C=float(value), solver="lbfgs", max_iter=opts.max_iter,
                              tol=opts.tol, class_weight=opts.class_weight,
                              random_state=seed, warm_start=warm)


def _torch(module: str, name: str, value: float, opts: SolverOptions) -> BaseEstimator:
    """The torch L-BFGS estimator ``name`` of ``module`` (imported only when a probe is built
    with it, so torch loads only for fitting), warm-started along the C grid."""
    cls = getattr(importlib.import_module(f".{module}", __package__), name)
    return cls(C=float(value), max_iter=opts.max_iter, tol=opts.tol,
               class_weight=opts.class_weight, warm_start=True, device=opts.device)


def _logreg(value: float, opts: LogregOptions, seed: int) -> BaseEstimator:
    if opts.solver == "torch":
        return _torch("torch_lbfgs", "TorchLogisticRegression", value, opts)
    return _sklearn_logreg(value, opts, seed, warm=True)


def _sklearn_svm(value: float, opts: LinearOptions, seed: int) -> LinearSVC:
    # liblinear makes its own float64 copy per fit; there is no float32 path in sklearn.
    return LinearSVC(C=float(value), max_iter=opts.max_iter, tol=opts.tol,
                     class_weight=opts.class_weight, random_state=seed)


def _svm(value: float, opts: SvmOptions, seed: int) -> BaseEstimator:
    if opts.solver == "torch":
        return _torch("torch_svm", "TorchLinearSVC", value, opts)
    return _sklearn_svm(value, opts, seed)


def _ovr_logreg(value: float, opts: OvrOptions, seed: int) -> BaseEstimator:
    if opts.solver == "torch":
        return _torch("torch_ovr", "TorchOvrLogisticRegression", value, opts)
    return OneVsRestClassifier(_sklearn_logreg(value, opts, seed))


def _ovr_svm(value: float, opts: OvrOptions, seed: int) -> BaseEstimator:
    if opts.solver == "torch":
        return _torch("torch_ovr", "TorchOvrLinearSVC", value, opts)
    return OneVsRestClassifier(_sklearn_svm(value, opts, seed))


def _knn(value: int, opts: KnnOptions, seed: int) -> CosineKNNClassifier:
    return CosineKNNClassifier(n_neighbors=int(value), temperature=opts.temperature)


PROBES: dict[str, ProbeSpec] = {
    "logreg": ProbeSpec("logreg", ("multiclass",), LogregOptions, _logreg,
                        log_scale=True, warm_start=True, solver="sklearn lbfgs"),
    # warm_start: the torch solver starts from the nearest fitted C (liblinear ignores it).
    "linear_svm": ProbeSpec("linear_svm", ("multiclass",), SvmOptions, _svm,
                            log_scale=True, warm_start=True, solver="sklearn liblinear"),
    "knn": ProbeSpec("knn", ("multiclass",), KnnOptions, _knn, log_scale=False, warm_start=False,
                     solver="exact cosine k-NN"),
    # warm_start: the torch solvers start from the nearest fitted C (sklearn's
    # OneVsRestClassifier clones its estimator on every fit, so it cannot).
    "ovr_logreg": ProbeSpec("ovr_logreg", ("multilabel", "multiclass"), OvrOptions, _ovr_logreg,
                            log_scale=True, warm_start=True, solver="sklearn lbfgs"),
    "ovr_linear_svm": ProbeSpec("ovr_linear_svm", ("multilabel", "multiclass"), OvrOptions,
                                _ovr_svm, log_scale=True, warm_start=True,
                                solver="sklearn liblinear"),
}


def solver_name(spec: ProbeSpec, opts: ProbeOptions) -> str:
    """What fitted the run, as the metrics JSON and the report show it."""
    return "torch L-BFGS" if getattr(opts, "solver", None) == "torch" else spec.solver


def get_probe(name: str, task: str | None = None) -> ProbeSpec:
    """The spec of probe ``name``; checks it supports ``task`` when given."""
    if name not in PROBES:
        close = difflib.get_close_matches(str(name), list(PROBES), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown probe {name!r}; choose one of {sorted(PROBES)}.{hint}")
    spec = PROBES[name]
    if task is not None and task not in spec.tasks:
        alt = sorted(n for n, s in PROBES.items() if task in s.tasks)
        raise ValueError(f"probe {name!r} does not support {task} data; use one of {alt}")
    return spec


def probe_options(probe: str, options: Mapping[str, Any] | ProbeOptions | None = None
                  ) -> ProbeOptions:
    """Probe ``probe``'s options dataclass from a dict of options (None: all defaults), or
    ``options`` itself when it is already an instance of that class; ValueError otherwise."""
    cls = get_probe(probe).options
    if isinstance(options, ProbeOptions):
        if type(options) is not cls:
            raise ValueError(f"The options of probe {probe!r} must be a dict or a "
                             f"{cls.__name__}. Got a {type(options).__name__} instead.")
        return options
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(f"The options of probe {probe!r} must be a dict or a {cls.__name__}. "
                         f"Got {options!r} instead.")
    return options_from_dict(cls, options, probe)


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
