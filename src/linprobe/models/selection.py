"""Hyper-parameter selection on held-out data (never on test).

Schemes: ``val`` (the given val split; if it is empty, a seeded stratified ``holdout_fraction``
of train, reported as ``val_from_train``) and ``kfold`` (stratified k-fold over train+val, for small
data). Each grid value is fitted on the fold's training part and scored on its held-out part;
consecutive values warm-start from the previous solution where the solver allows, and the
``refine`` search bisects the log grid around the best value, warm-starting from it.

The ``path`` search (torch solvers; their default, ``search: auto``) walks the grid upwards
along the warm-started regularisation path at a loose tolerance (``PATH_TOL_FACTOR`` x tol, at least
``PATH_MIN_ITER`` iterations per value), stops once ``PATH_PATIENCE`` consecutive values score
below the best (the large-C fits are the slowest and, past the peak, only get worse), and
chooses among the values fitted as the grid search does; the refit on train+val then starts
from the loose solution at the chosen value and runs to the full tol. Measured on a 60k x 1280
stand-in: 418 passes for the sweep instead of 1,778 at the full tol, the chosen C one grid
step below the full-tol choice, whose val score it trails by 0.1 point (6 of 6,000 rows).
Re-fitting the best value and its neighbours at the full tol before choosing, or asking each
loose fit to cut its warm-start gradient 10x, cost as many passes as the full tol.
The squared-hinge solvers use 30 x tol (their ``path_tol_factor``): their gradients are larger
than the logistic ones at the same distance from the optimum, and on the real 54k x 1280
Fashion-MNIST train split 30x gave the same val accuracy at every C up to the chosen one and
past it, in 408 passes for the six values the path fits instead of 796 at 10x.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit

from linprobe.threads import fit_scope

from .metrics import balanced_accuracy, full_scores, json_number, macro_f1, mean_ap, micro_ap
from .options import ProbeOptions
from .probes import ProbeSpec, normalize_fit_transform

PATH_TOL_FACTOR = 10.0   # an estimator's ``path_tol_factor`` attribute overrides it
PATH_MIN_ITER = 10
PATH_PATIENCE = 2

ScoreFn = Callable[[np.ndarray, np.ndarray], float]

SCORERS: dict[str, ScoreFn] = {
    "accuracy": lambda y, s: float(np.mean(np.argmax(s, axis=1) == y)),
    "balanced_accuracy": lambda y, s: balanced_accuracy(y, np.argmax(s, axis=1)),
    "macro_f1": lambda y, s: macro_f1(y, np.argmax(s, axis=1)),
    "mAP": mean_ap,
    "micro_ap": micro_ap,
}


@dataclass
class Fold:
    """One (fit, held-out) pair: row indices into the pooled train+val arrays."""
    fit_idx: np.ndarray
    eval_idx: np.ndarray
    X_fit: np.ndarray = field(repr=False, default=None)
    X_eval: np.ndarray = field(repr=False, default=None)
    fitted: dict = field(default_factory=dict, repr=False)   # value -> fitted classifier


@dataclass
class Selection:
    """Outcome: chosen ``value``, the whole ``curve`` [{param: v, "score": s}, ...] sorted by v,
    held-out ``eval_scores`` (n_eval, C) at the chosen value with their labels ``eval_y`` (the
    val split, or out-of-fold for kfold), and the wall time."""
    scheme: str
    search: str          # "grid", or "refine" when refinement steps ran
    param: str
    value: Any
    curve: list[dict]
    eval_y: np.ndarray
    eval_scores: np.ndarray
    n_fits: int
    n_iter: int          # total solver iterations over all fits (0 for non-iterative probes)
    seconds: float
    n_passes: int | None = None   # full passes over the fit rows (torch solvers; else None)
    warm: Any = None     # path search: the fitted classifier at the chosen value (refit start)


def make_folds(y: np.ndarray, is_val: np.ndarray, scheme: str, *, folds: int,
               holdout_fraction: float, seed: int) -> tuple[str, list[Fold]]:
    """Folds over the pooled train+val rows; y (n,) or (n, C), is_val (n,) bool."""
    n = len(y)
    multilabel = y.ndim == 2
    if scheme == "kfold":
        if n < folds:
            raise ValueError(f"scheme 'kfold' with folds={folds} needs at least {folds} "
                             f"train+val samples; got {n}. Lower the 'folds' option.")
        splitter = (KFold(folds, shuffle=True, random_state=seed) if multilabel
                    else StratifiedKFold(folds, shuffle=True, random_state=seed))
        with warnings.catch_warnings():   # "least populated class has only k members"
            warnings.simplefilter("ignore", UserWarning)
            return "kfold", [Fold(a, b) for a, b in splitter.split(np.zeros(n), y)]
    if is_val.any():
        return "val", [Fold(np.flatnonzero(~is_val), np.flatnonzero(is_val))]
    if n < 2:
        raise ValueError("no val split and fewer than 2 train samples: cannot hold out data "
                         "for selection; add a val split or more train data")
    strat = (not multilabel and np.unique(y, return_counts=True)[1].min() >= 2
             and round(holdout_fraction * n) >= len(np.unique(y)))
    cls = StratifiedShuffleSplit if strat else ShuffleSplit
    a, b = next(cls(n_splits=1, test_size=holdout_fraction, random_state=seed)
                .split(np.zeros(n), y if strat else None))
    return "val_from_train", [Fold(a, b)]


def select(spec: ProbeSpec, opts: ProbeOptions, seed: int, X: np.ndarray, y: np.ndarray,
           is_val: np.ndarray, n_classes: int) -> Selection:
    """Search ``opts.grid`` for ``spec.param`` on X (n, D) float32 train+val, y, is_val;
    ``opts`` resolved (:func:`.options.resolve_options`)."""
    t0 = time.perf_counter()
    scheme, folds = make_folds(y, is_val, opts.scheme, folds=opts.folds,
                               holdout_fraction=opts.holdout_fraction, seed=seed)
    for f in folds:
        # X[idx] is a fresh copy, so it can be normalised in place.
        _, f.X_fit, f.X_eval = normalize_fit_transform(opts.normalize, X[f.fit_idx],
                                                       X[f.eval_idx], inplace=True)
    score_fn = SCORERS[opts.selection_metric]
    eval_y = y[np.concatenate([f.eval_idx for f in folds])]
    results: dict[Any, tuple[float, np.ndarray]] = {}
    n_fits = n_iter = 0
    n_passes: int | None = None

    def evaluate(values: list, loose: bool = False) -> None:
        nonlocal n_fits, n_iter, n_passes
        for v in values:
            parts = []
            for f in folds:
                scores, clf = _fit_score(spec, opts, seed, f, v, y, n_classes, loose)
                parts.append(scores)
                n_fits += 1
                n_iter += n_iterations(clf)
                if hasattr(clf, "n_passes_"):
                    n_passes = (n_passes or 0) + clf.n_passes_
            s = np.concatenate(parts)
            # With kfold the curve is the score of the pooled out-of-fold predictions.
            results[v] = (score_fn(eval_y, s), s)

    search = run_search(opts, spec.log_scale, evaluate, results)
    best, curve = choose(results, spec.param)
    warm = folds[0].fitted.get(best) if search == "path" and len(folds) == 1 else None
    return Selection(scheme, search, spec.param, best, curve, eval_y, results[best][1], n_fits,
                     n_iter, time.perf_counter() - t0, n_passes, warm)


def run_search(opts: ProbeOptions, log_scale: bool, evaluate: Callable[..., None],
               results: dict) -> str:
    """The search ``opts`` ask for over ``opts.grid``: ``evaluate(values, loose=False)`` fits and
    scores each value into ``results`` {value: (score, ...)}; returns the search that ran
    ('grid', 'path', or 'refine' when refinement steps ran). In-memory and streamed
    (:mod:`.stream_train`) selections share it."""
    search = opts.resolved_search() if hasattr(opts, "resolved_search") else "grid"
    if search == "path":
        _path(evaluate, results, list(opts.grid))
    else:
        evaluate(list(opts.grid))
    steps = opts.refine_steps_to_run() if log_scale else 0
    for _ in range(steps):
        evaluate(_refine_candidates(results))
    return "refine" if steps else search


def choose(results: dict, param: str) -> tuple[Any, list[dict]]:
    """The chosen value of ``results`` {value: (score, ...)} and the curve
    [{param: v, "score": s}, ...] sorted by v."""
    values = sorted(results)
    best = _plateau_middle(values, [results[v][0] for v in values])
    return best, [{param: v, "score": json_number(results[v][0])} for v in values]


def fit_settings(tol: float, loose: bool, solver: Any = None) -> dict[str, Any]:
    """``tol`` and ``min_iter`` of a torch solver's fit (``solver``: its estimator or class, for
    its ``path_tol_factor``) at the full ``tol``, or at the path search's loose one."""
    if not loose:
        return {"tol": tol, "min_iter": 0}
    return {"tol": tol * getattr(solver, "path_tol_factor", PATH_TOL_FACTOR),
            "min_iter": PATH_MIN_ITER}


def _path(evaluate: Callable, results: dict, grid: list) -> None:
    """The ``path`` search (module docstring): ``evaluate(values, loose)`` fills ``results``."""
    worse = 0
    for v in grid:
        evaluate([v], loose=True)
        best = max(_finite(r[0]) for r in results.values())
        worse = worse + 1 if _finite(results[v][0]) < best else 0
        if worse >= PATH_PATIENCE:
            break


def _fit_score(spec: ProbeSpec, opts: ProbeOptions, seed: int, fold: Fold, v: Any, y: np.ndarray,
               n_classes: int, loose: bool = False) -> tuple[np.ndarray, Any]:
    """Fit at value v on the fold (warm-started from the nearest fitted value; ``loose``: at the
    path search's loose tolerance); return the held-out scores (n_eval, C) and the fitted
    classifier."""
    clf = None
    if spec.warm_start and fold.fitted:
        nearest = min(fold.fitted, key=lambda u: abs(np.log(u) - np.log(v)))
        clf = copy.deepcopy(fold.fitted[nearest])
        clf.set_params(**{spec.param: v})
    if clf is None:
        clf = spec.build(v, opts, seed)
    if "min_iter" in clf.get_params():   # the torch solvers
        clf.set_params(**fit_settings(opts.tol, loose, clf))
    with warnings.catch_warnings():
        # Non-converged fits at tiny/huge C are part of any sweep; the curve shows their score.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Label .*present in all training")
        with fit_scope(clf):  # the threads of this fit (train.py's controller; else no-op)
            clf.fit(fold.X_fit, y[fold.fit_idx])
    # sklearn's OneVsRestClassifier (no C of its own) clones its estimator on every fit:
    # nothing to warm-start from.
    if spec.warm_start and spec.param in clf.get_params(deep=False):
        fold.fitted[v] = clf
    return full_scores(clf, fold.X_eval, n_classes)[0], clf


def n_iterations(clf) -> int:
    """Solver iterations of a fitted linear model (summed over OVR estimators; 0 for k-NN)."""
    est = getattr(clf, "estimators_", [clf])
    return int(sum(np.max(getattr(e, "n_iter_", 0)) for e in est))


def _refine_candidates(results: dict) -> list:
    """Geometric midpoints between the best value and its evaluated neighbours."""
    values = sorted(results)
    i = values.index(_plateau_middle(values, [results[v][0] for v in values]))
    out = [float(np.sqrt(values[i] * values[j])) for j in (i - 1, i + 1) if 0 <= j < len(values)]
    return [v for v in out if v not in results]


def _plateau_middle(values: list, scores: list[float]) -> Any:
    """The best-scoring value; among ties, the middle of the tied values.

    Ties are common (accuracy on a small val split, or mAP that is a perfect 1.0 over a wide C
    range); taking the smallest tied C would pick an over-regularised model whose scores are
    badly scaled across classes, the largest an unregularised one.
    """
    s = np.array([_finite(v) for v in scores])
    tied = np.flatnonzero(s == s.max())
    return values[int(tied[(len(tied) - 1) // 2])]


def _finite(v: float) -> float:
    return v if np.isfinite(v) else -np.inf

