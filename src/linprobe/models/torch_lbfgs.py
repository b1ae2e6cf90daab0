"""Optional torch L-BFGS solver for the ``logreg`` probe (CPU or GPU).

It minimises exactly sklearn's LogisticRegression(lbfgs) objective,

    (1 / sum(w)) * [ sum_i w_i * CE(x_i W^T + b, y_i) + ||W||^2 / (2 C) ]

(w_i = class weights; multinomial with one row per class for >= 3 classes, a single logistic
row for 2 classes; intercept not penalised), with the same stopping rule (max |gradient| <= tol),
its loss and gradient computed by :mod:`.lbfgs` (two passes over X per evaluation).
sklearn's solver stays the reference: ``tests/models/test_torch_lbfgs.py`` checks coefficients
and accuracy against it. torch is imported only inside ``fit``; the fitted estimator predicts
with numpy, and :meth:`TorchLogisticRegression.to_sklearn` turns it into a plain
``LogisticRegression`` for saving.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data


def no_cuda_message(device: str) -> str:
    """The error for ``device: cuda`` on a machine without a usable CUDA GPU."""
    return (f"The 'device' probe option is {device!r} but torch finds no CUDA GPU "
            "(torch.cuda.is_available() is False); set device: auto (GPU when present, else CPU) "
            "or device: cpu, or install a CUDA build of torch.")


def torch_device(device: str):
    """The torch device for the ``device`` option: "auto" (cuda when available) | "cpu" |
    "cuda" (ValueError when torch finds no CUDA GPU)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(no_cuda_message(device))
    return dev


class TorchLinear(ClassifierMixin, BaseEstimator):
    """What the torch L-BFGS probes share: sklearn-style parameters (C, max_iter, tol,
    class_weight, warm_start; ``device``: "auto" (cuda when available) | "cpu" | "cuda";
    ``min_iter``: iterations before the tol test counts, for warm starts at a loose tol), label
    checks, numpy decision values, and the copy into an equivalent fitted sklearn estimator.
    A fit sets ``n_passes_``: the full passes over X it made (see :mod:`.lbfgs`)."""

    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-4,
                 class_weight=None, warm_start: bool = False, device: str = "auto",
                 min_iter: int = 0):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.device = device
        self.min_iter = min_iter

    def _labels(self, X, y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Validated X (n, D) float32/float64, y (n,), classes (n_classes,), y as indices (n,)."""
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64], order="C")
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y; "
                             f"got {len(classes)}")
        return X, y, classes, y_idx

    def _warm_start_from(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
        """The previous fit's (coef_, intercept_) when warm-starting and their shape fits."""
        if self.warm_start and getattr(self, "coef_", None) is not None \
                and self.coef_.shape == shape:
            return self.coef_, self.intercept_
        return None

    def _init(self, k: int, d: int, dtype) -> tuple["torch.Tensor", "torch.Tensor"]:
        """Starting point W (k, d), b (k,) on the CPU in ``dtype``: the previous fit's when
        warm-starting and its shape fits, else zeros."""
        import torch

        W, b = self._warm_start_from((k, d)) or (np.zeros((k, d)), np.zeros(k))
        return torch.from_numpy(np.array(W, dtype)), torch.from_numpy(np.array(b, dtype))

    def decision_function(self, X) -> np.ndarray:
        """(n, n_classes) decision values, or (n,) for 2 classes (as sklearn)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        d = X @ self.coef_.T.astype(X.dtype) + self.intercept_.astype(X.dtype)
        return d[:, 0] if d.shape[1] == 1 else d

    def _fitted_into(self, est: BaseEstimator) -> BaseEstimator:
        """``est`` (an unfitted sklearn estimator) given this fit's attributes."""
        check_is_fitted(self)
        est.classes_ = self.classes_
        est.coef_ = self.coef_.copy()
        est.intercept_ = self.intercept_.copy()
        est.n_features_in_ = self.n_features_in_
        est.n_iter_ = np.copy(self.n_iter_)
        return est


class TorchLogisticRegression(TorchLinear):
    """L2 logistic regression fitted with ``torch.optim.LBFGS`` (parameters: :class:`TorchLinear`)."""

    def fit(self, X, y) -> "TorchLogisticRegression":
        """X (n, D) float32/float64, y (n,) labels."""
        import torch    # lazy: linprobe.models must not need torch

        from .lbfgs import Block, minimize

        X, y, classes, y_idx = self._labels(X, y)
        dev = torch_device(self.device)
        sw = compute_sample_weight(self.class_weight, y)
        k = 1 if len(classes) == 2 else len(classes)
        # sklearn's objective divided by sum(w): weights w / sum(w), penalty 1 / (C sum(w)).
        S = torch.from_numpy((sw / sw.sum()).astype(X.dtype)).to(dev)
        Xt = torch.from_numpy(X).to(dev)
        if k == 1:
            blk = Block(Xt, torch.from_numpy(y_idx[:, None].astype(X.dtype)).to(dev), S[:, None])
        else:
            blk = Block(Xt, torch.from_numpy(y_idx.astype(np.int64)).to(dev), S)
        W0, b0 = self._init(k, X.shape[1], X.dtype)
        r = torch.full((k,), 1.0 / (float(self.C) * float(sw.sum())), dtype=Xt.dtype, device=dev)
        res = minimize("sigmoid" if k == 1 else "softmax", lambda: (blk,),
                       W0.to(dev), b0.to(dev), r, penalize_bias=False,
                       max_iter=self.max_iter, tol=self.tol, min_iter=self.min_iter)
        self.classes_ = classes
        self.coef_, self.intercept_ = res.W, res.b
        self.n_iter_ = np.array([res.n_iter])
        self.n_passes_ = res.n_passes
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(n, n_classes) probabilities."""
        d = self.decision_function(X)
        if d.ndim == 1:
            p1 = 1 / (1 + np.exp(-d))
            return np.column_stack([1 - p1, p1])
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def to_sklearn(self) -> LogisticRegression:
        """An equivalent fitted sklearn LogisticRegression (pickles without linprobe/torch)."""
        return self._fitted_into(LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol,
                                                    class_weight=self.class_weight))
