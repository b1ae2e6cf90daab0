"""Torch L-BFGS solvers for the one-vs-rest probes ``ovr_logreg`` and ``ovr_linear_svm``
(multilabel or multiclass; CPU or GPU).

sklearn's ``OneVsRestClassifier`` binarises y with a ``LabelBinarizer`` (one 0/1 column per
class; a single column for 2 classes) and fits a clone of its estimator on each column: a
constant column (a class with no positive, or only positives) gets a ``_ConstantPredictor``,
and ``class_weight`` is applied by each clone to *its* 0/1 labels (``"balanced"``: balanced
between the column's positives and negatives). Here the K binary problems are one objective
summed over k (they share no parameters, so its minimiser is each problem's): one ``X @ W.T``
per evaluation for all K, each problem's exact sklearn objective,

* ``ovr_logreg``: LogisticRegression(lbfgs), binary:
  ``(1 / sum_i s_ik) * [sum_i s_ik * BCE(x_i w_k + b_k, y_ik) + ||w_k||^2 / (2 C)]``;
* ``ovr_linear_svm``: LinearSVC (liblinear, squared hinge, bias penalised as
  ``intercept_scaling=1``), as :mod:`.torch_svm` fits it with +-1 targets,

stopping when the largest gradient entry over all K problems is <= ``tol``.
``tests/models/test_torch_ovr.py`` checks objectives, predictions and the chosen C against
sklearn. The fitted estimator predicts through its plain sklearn ``OneVsRestClassifier``
(:meth:`to_sklearn`), which is what the run saves.
"""

from __future__ import annotations

import copy
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.preprocessing import LabelBinarizer
from sklearn.svm import LinearSVC
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted, validate_data

from .lbfgs import Block, Result, minimize
from .torch_lbfgs import TorchLinear, torch_device
from .torch_svm import fit_squared_hinge


def binary_problems(y, class_weight) -> tuple[LabelBinarizer, np.ndarray, np.ndarray]:
    """OneVsRestClassifier's binary problems for y (n,) labels or (n, C) indicator: the fitted
    binarizer, Y (n, K) 0/1 int and the per-sample weights S (n, K) each column's estimator
    applies (``class_weight`` over that column's labels {0, 1})."""
    lb = LabelBinarizer(sparse_output=True)
    Y = lb.fit_transform(y).toarray().astype(np.int64)
    S = np.ones(Y.shape)
    for k in np.flatnonzero(Y.min(axis=0) != Y.max(axis=0)):
        cw = compute_class_weight(class_weight, classes=np.array([0, 1]), y=Y[:, k])
        S[:, k] = cw[Y[:, k]]
    return lb, Y, S


class TorchOneVsRest(TorchLinear):
    """What the two one-vs-rest solvers share (parameters: :class:`~.torch_lbfgs.TorchLinear`).
    After ``fit``: ``coef_`` (K, D), ``intercept_`` (K,) (zeros for constant columns),
    ``n_iter_`` (1,), ``n_passes_``, and ``ovr_`` the equivalent fitted OneVsRestClassifier."""

    def fit(self, X, y) -> "TorchOneVsRest":
        """X (n, D) float32/float64; y (n,) labels (multiclass) or (n, C) 0/1 (multilabel)."""
        import torch    # lazy: linprobe.models must not need torch

        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64], order="C",
                             multi_output=True)
        lb, Y, S = binary_problems(y, self.class_weight)
        active = np.flatnonzero(Y.min(axis=0) != Y.max(axis=0))
        W0, b0 = self._init(Y.shape[1], X.shape[1], X.dtype)
        W = np.zeros((Y.shape[1], X.shape[1]), X.dtype)
        b = np.zeros(Y.shape[1], X.dtype)
        res = Result(W, b, 0, 0)
        if len(active):
            idx = torch.from_numpy(active)
            res = self._solve(X, Y[:, active], S[:, active], (W0[idx], b0[idx]))
            W[active], b[active] = res.W, res.b
        self.label_binarizer_, self.classes_ = lb, lb.classes_
        self.coef_, self.intercept_ = W, b
        self.n_iter_ = np.array([res.n_iter])
        self.n_passes_ = res.n_passes
        self.ovr_ = self._assemble(X, Y, active)
        return self

    def _solve(self, X: np.ndarray, Y: np.ndarray, S: np.ndarray, init) -> Result:
        raise NotImplementedError

    def _binary(self) -> BaseEstimator:
        raise NotImplementedError

    def _assemble(self, X: np.ndarray, Y: np.ndarray, active: np.ndarray) -> OneVsRestClassifier:
        """The fitted OneVsRestClassifier: one binary estimator per column, as sklearn's fit
        would leave it."""
        est = []
        for k in range(Y.shape[1]):
            if k not in active:
                est.append(_ConstantPredictor().fit(X[:1], Y[:1, k]))
                continue
            e = self._binary()
            e.classes_ = np.array([0, 1])
            e.coef_, e.intercept_ = self.coef_[k:k + 1].copy(), self.intercept_[k:k + 1].copy()
            e.n_features_in_ = X.shape[1]
            # LogisticRegression's n_iter_ is an array (1,), LinearSVC's an int.
            e.n_iter_ = int(self.n_iter_[0]) if isinstance(e, LinearSVC) else self.n_iter_.copy()
            est.append(e)
        ovr = OneVsRestClassifier(self._binary())
        ovr.label_binarizer_, ovr.classes_ = self.label_binarizer_, self.classes_
        ovr.estimators_, ovr.n_features_in_ = est, X.shape[1]
        return ovr

    def decision_function(self, X) -> np.ndarray:
        """(n, K) decision values, or (n,) for 2 classes (as OneVsRestClassifier)."""
        check_is_fitted(self)
        return self.ovr_.decision_function(X)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.ovr_.predict(X)

    def to_sklearn(self) -> OneVsRestClassifier:
        """The equivalent fitted OneVsRestClassifier (pickles without linprobe/torch)."""
        check_is_fitted(self)
        return copy.deepcopy(self.ovr_)


class TorchOvrLogisticRegression(TorchOneVsRest):
    """One-vs-rest L2 logistic regression, the K problems fitted together."""

    def _solve(self, X, Y, S, init) -> Result:
        import torch

        dev = torch_device(self.device)
        tot = S.sum(axis=0)                                   # (K,) each problem's sum(w)
        blk = Block(torch.from_numpy(X).to(dev), torch.from_numpy(Y.astype(X.dtype)).to(dev),
                    torch.from_numpy((S / tot).astype(X.dtype)).to(dev))
        r = torch.from_numpy((1.0 / (float(self.C) * tot)).astype(X.dtype)).to(dev)
        return minimize("sigmoid", lambda: (blk,), init[0].to(dev), init[1].to(dev), r,
                        penalize_bias=False, max_iter=self.max_iter, tol=self.tol,
                        min_iter=self.min_iter)

    def _binary(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol,
                                  class_weight=self.class_weight)

    def predict_proba(self, X) -> np.ndarray:
        """(n, K) probabilities as OneVsRestClassifier gives them (rows normalised unless
        multilabel)."""
        check_is_fitted(self)
        return self.ovr_.predict_proba(X)


class TorchOvrLinearSVC(TorchOneVsRest):
    """One-vs-rest linear SVM (squared hinge, liblinear's primal), the K problems together."""
    path_tol_factor = 30.0   # the path search's loose tol (models/selection.py)

    def _solve(self, X, Y, S, init) -> Result:
        return fit_squared_hinge(X, np.where(Y == 1, 1.0, -1.0), S, self.C, init,
                                 self.max_iter, self.tol, self.device, self.min_iter)

    def _binary(self) -> LinearSVC:
        return LinearSVC(C=self.C, max_iter=self.max_iter, tol=self.tol,
                         class_weight=self.class_weight)
