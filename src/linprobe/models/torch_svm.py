"""Optional torch L-BFGS solver for the ``linear_svm`` probe (CPU or GPU).

It minimises exactly the primal that sklearn's ``LinearSVC`` (liblinear, squared hinge, L2,
one-vs-rest, ``intercept_scaling=1``) minimises, for each binary problem k:

    0.5 * ||[w_k, b_k]||^2 + C * sum_i s_ik * max(0, 1 - y_ik (w_k . x_i + b_k))^2

with y_ik = +1 for samples of class k and -1 otherwise (2 classes: one problem, +1 = the second
class), the bias penalised like a weight (liblinear appends a constant-1 feature), and s_ik
liblinear's class weights: in problem k the samples of class k cost ``class_weight[k] * C`` and
all other samples cost ``C``, the weights of *their* classes unused; with 2 classes each sample
costs ``class_weight[its class] * C`` (``tests/models/test_torch_svm.py`` checks both against
``LinearSVC``). All problems are solved together: one objective summed over k, one ``X @ W.T``
per evaluation, since the problems share no parameters the sum's minimiser is each one's.

L-BFGS runs on the objective divided by ``C * n`` (same minimiser; gradients on the scale of
logreg's mean loss) and stops, as :class:`~.torch_lbfgs.TorchLogisticRegression` does, when the
largest absolute gradient entry is <= ``tol`` or after ``max_iter`` iterations. The squared
hinge is once continuously differentiable (its gradient is Lipschitz), which is what L-BFGS with
a strong Wolfe line search needs. ``tol`` therefore means something else than liblinear's
(a dual projected-gradient gap or a relative primal gradient norm); ``n_iter_`` counts L-BFGS
iterations. liblinear stays the reference; the fitted estimator predicts with numpy, and
:meth:`TorchLinearSVC.to_sklearn` turns it into a plain fitted ``LinearSVC`` for saving.
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import LinearSVC
from sklearn.utils.class_weight import compute_class_weight

from .lbfgs import Block, Result, minimize
from .torch_lbfgs import TorchLinear, torch_device


def ovr_targets(y_idx: np.ndarray, class_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """liblinear's binary problems for labels y_idx (n,) in [0, n_classes) with per-class
    weights class_w (n_classes,): targets Y (n, K) in {-1, +1} and cost multipliers S (n, K),
    K = 1 for 2 classes (+1 = class 1), else n_classes."""
    n_classes = len(class_w)
    if n_classes == 2:
        Y = np.where(y_idx == 1, 1.0, -1.0)[:, None]
        return Y, class_w[y_idx][:, None]
    pos = y_idx[:, None] == np.arange(n_classes)[None, :]
    return np.where(pos, 1.0, -1.0), np.where(pos, class_w[None, :], 1.0)


def primal_objective(X: np.ndarray, Y: np.ndarray, S: np.ndarray, W: np.ndarray,
                     b: np.ndarray, C: float) -> np.ndarray:
    """liblinear's primal per problem (K,), in float64: X (n, D), Y and S (n, K), W (K, D),
    b (K,)."""
    X, W, b = (np.asarray(a, np.float64) for a in (X, W, b))
    h = np.maximum(0.0, 1.0 - Y * (X @ W.T + b))
    return 0.5 * ((W * W).sum(axis=1) + b * b) + C * (S * h * h).sum(axis=0)


class TorchLinearSVC(TorchLinear):
    """Linear SVM (squared hinge, L2, one-vs-rest) fitted with ``torch.optim.LBFGS``
    (parameters: :class:`~.torch_lbfgs.TorchLinear`); computes in X's dtype."""
    path_tol_factor = 30.0   # the path search's loose tol (models/selection.py)

    def fit(self, X, y) -> "TorchLinearSVC":
        """X (n, D) float32/float64, y (n,) labels."""
        X, y, classes, y_idx = self._labels(X, y)
        class_w = compute_class_weight(self.class_weight, classes=classes, y=y)
        Y, S = ovr_targets(y_idx, class_w)
        res = fit_squared_hinge(X, Y, S, self.C, self._init(Y.shape[1], X.shape[1], X.dtype),
                                self.max_iter, self.tol, self.device, self.min_iter)
        self.classes_ = classes
        self.coef_, self.intercept_, self.n_iter_ = res.W, res.b, res.n_iter
        self.n_passes_ = res.n_passes
        return self

    def predict(self, X) -> np.ndarray:
        d = self.decision_function(X)
        return self.classes_[(d > 0).astype(int) if d.ndim == 1 else np.argmax(d, axis=1)]

    def to_sklearn(self) -> LinearSVC:
        """An equivalent fitted sklearn LinearSVC (pickles without linprobe/torch)."""
        svc = self._fitted_into(LinearSVC(C=self.C, max_iter=self.max_iter, tol=self.tol,
                                          class_weight=self.class_weight))
        svc.n_iter_ = int(self.n_iter_)   # LinearSVC's n_iter_ is an int
        return svc


def fit_squared_hinge(X: np.ndarray, Y: np.ndarray, S: np.ndarray, C: float,
                      init: tuple["torch.Tensor", "torch.Tensor"], max_iter: int, tol: float,
                      device: str, min_iter: int = 0) -> Result:
    """Minimise the K problems of :func:`primal_objective` together.

    X (n, D) float32/float64; Y, S (n, K); init (W (K, D), b (K,)) torch tensors.
    Returns W (K, D), b (K,) in X's dtype, the L-BFGS iterations and the passes over X.
    """
    import torch    # lazy: linprobe.models must not need torch

    dev = torch_device(device)
    n, K = Y.shape
    # Scaled by 1 / (C n): the gradient test then means the same across C and n.
    blk = Block(torch.from_numpy(X).to(dev), torch.from_numpy(Y.astype(X.dtype)).to(dev),
                torch.from_numpy((S / n).astype(X.dtype)).to(dev))
    r = torch.full((K,), 1.0 / (float(C) * n), dtype=blk.X.dtype, device=dev)
    return minimize("squared_hinge", lambda: (blk,), init[0].to(dev), init[1].to(dev), r,
                    penalize_bias=True, max_iter=max_iter, tol=tol, min_iter=min_iter)
