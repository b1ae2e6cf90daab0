"""The ``logreg`` probe fitted by streaming its rows: memory bounded by one block, not by N.

:func:`fit_streamed` minimises exactly the objective of
:class:`~linprobe.models.torch_lbfgs.TorchLogisticRegression` (sklearn's lbfgs
LogisticRegression: ``(1 / sum(w)) * [sum_i w_i CE(x_i W^T + b, y_i) + ||W||^2 / (2 C)]``, class
weights ``w``, multinomial for >= 3 classes, one logistic row for 2, intercept not penalised)
with ``torch.optim.LBFGS`` and the same settings and stopping rule (max |gradient| <= tol). Each
evaluation of the closure is one pass over the row blocks of a :mod:`.blocks` source: per block
the float32 logits and the analytic gradient ``(P - Y)^T X`` are computed on the device, and
loss and gradient are summed in float64 across blocks (the parameters are float64 too). The
normaliser (``standard``: the same statistics as :func:`.probes.fit_scaler`) comes from one
streamed pass before and is applied to each block as it is read.

Under torch.distributed (torchrun, gloo on CPU or nccl on GPUs) each rank streams its own share
of the rows (``H5Blocks(..., rank, world)``) and the sums (normaliser statistics, class counts,
loss and gradient) are all-reduced, so every rank takes the same L-BFGS steps and ends with the
same model as one process (tests/models/test_streaming.py).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler

from .options import NORMALIZATIONS
from .probes import assemble
from .torch_lbfgs import TorchLogisticRegression, torch_device


def _reduce(t):
    """``t`` summed over the torch.distributed ranks (itself when not distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def _reduce_np(a: np.ndarray) -> np.ndarray:
    """A float64 numpy array summed over the ranks."""
    import torch

    return _reduce(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))).numpy()


def stream_scaler(blocks) -> StandardScaler:
    """A fitted StandardScaler equal (up to float64 rounding) to ``fit_scaler`` on all rows of
    ``blocks`` (every rank's), from one pass: per-block counts, means and centred sums of squares
    merged with Chan's formula, then combined across ranks."""
    d = blocks.n_features
    n, mean, m2 = 0, np.zeros(d), np.zeros(d)
    buf = np.empty((0, d))
    for block, _ in blocks:
        if len(block) > len(buf):         # one float64 buffer, grown to the largest block
            buf = np.empty((len(block), d))
        X = buf[:len(block)]
        X[...] = block                    # the block in float64, centred in place below
        nb, mb = len(X), X.mean(axis=0)
        if not np.isfinite(mb).all():
            raise ValueError(_not_finite(blocks))
        X -= mb
        m2b = np.einsum("ij,ij->j", X, X)
        tot = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + np.square(delta) * (n * nb / tot)
        n = tot
    # Across ranks: the global mean from the sums, then each rank's m2 moved to that mean.
    n_all = int(_reduce_np(np.array([n]))[0])
    if n_all == 0:
        raise ValueError("the streamed rows are empty: there is nothing to fit the normaliser on")
    g_mean = _reduce_np(mean * n) / n_all
    var = _reduce_np(m2 + n * np.square(mean - g_mean)) / n_all
    scaler = StandardScaler()
    scaler.mean_, scaler.var_ = g_mean, var
    eps = np.finfo(np.float64).eps   # fit_scaler's (and sklearn's) rule for constant features
    constant = var <= n_all * eps * var + (n_all * g_mean * eps) ** 2
    scaler.scale_ = np.where(constant, 1.0, np.sqrt(var))
    scaler.n_samples_seen_ = n_all
    scaler.n_features_in_ = d
    return scaler


def fit_normalizer(kind: str, blocks) -> BaseEstimator:
    """The fitted normaliser of ``kind`` (standard | l2 | none) for the rows of ``blocks``."""
    if kind == "standard":
        return stream_scaler(blocks)
    if kind not in NORMALIZATIONS:
        raise ValueError(f"The 'normalize' option must be one of {NORMALIZATIONS}. Got {kind!r} "
                         "instead.")
    # Stateless: fitted on one zero row only to record the number of features.
    norm = Normalizer() if kind == "l2" else FunctionTransformer()
    return norm.fit(np.zeros((1, blocks.n_features), np.float32))


def _class_weights(classes: np.ndarray, counts: np.ndarray, class_weight) -> np.ndarray:
    """(n_classes,) weight per class, as sklearn's compute_sample_weight gives them."""
    if class_weight is None:
        return np.ones(len(classes))
    if class_weight == "balanced":
        return counts.sum() / (len(classes) * counts)
    return np.array([float(class_weight.get(c, 1.0)) for c in classes.tolist()])


def fit_streamed(blocks, C: float = 1.0, *, normalize: str = "standard", max_iter: int = 1000,
                 tol: float = 1e-4, class_weight=None, device: str = "auto",
                 init: Pipeline | None = None,
                 normalizer: BaseEstimator | None = None) -> Pipeline:
    """Fit ``normalize`` + L2 logistic regression on the rows of ``blocks`` (labels: class
    indices >= 0); returns ``Pipeline([("normalize", ...), ("probe", LogisticRegression)])``,
    the saved form of an in-memory fit. ``init`` (such a pipeline) warm-starts the solver;
    ``normalizer`` (fitted on these rows) saves the normaliser's pass."""
    import torch

    if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
        raise ValueError(f"The 'C' parameter must be a float > 0. Got {C!r} instead.")
    dev = torch_device(device)
    norm = normalizer if normalizer is not None else fit_normalizer(normalize, blocks)
    y_all = np.asarray(blocks.labels())
    if y_all.size and (y_all.dtype.kind not in "iu" or y_all.min() < 0):
        raise ValueError("streamed labels must be class indices >= 0")
    # Class counts over all ranks (a rank may lack a class): a bincount of a common length.
    n_bins = int(_max_over_ranks(int(y_all.max()) + 1 if y_all.size else 0))
    counts_all = _reduce_np(np.bincount(y_all, minlength=n_bins).astype(np.float64))
    classes = np.flatnonzero(counts_all)
    if len(classes) < 2:
        raise ValueError(f"a logistic regression needs at least 2 classes in y; got "
                         f"{len(classes)}")
    counts = counts_all[classes]
    cw = _class_weights(classes, counts, class_weight)
    index = np.full(n_bins, -1)
    index[classes] = np.arange(len(classes))
    sw_sum = float((cw * counts).sum())
    k = 1 if len(classes) == 2 else len(classes)
    d = blocks.n_features
    W = torch.zeros((k, d), dtype=torch.float64, device=dev)
    b = torch.zeros(k, dtype=torch.float64, device=dev)
    if init is not None:
        prev = init.named_steps["probe"]
        if prev.coef_.shape == (k, d):
            W.copy_(torch.from_numpy(np.asarray(prev.coef_, np.float64)))
            b.copy_(torch.from_numpy(np.asarray(prev.intercept_, np.float64)))
    cw_t = torch.from_numpy(cw).to(dev, torch.float32)
    mean, scale = _affine(norm, dev)
    W.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=64 * np.finfo(float).eps, history_size=10,
                            line_search_fn="strong_wolfe")
    n_eval = [0]

    buf = [torch.empty((0, d), dtype=torch.float32, device=dev)]   # the normalised block

    def normalised(Xt):
        """Xt normalised into one buffer reused across blocks and passes (grown as needed)."""
        if mean is None and normalize != "l2":
            return Xt
        if len(Xt) > len(buf[0]):
            buf[0] = torch.empty((len(Xt), d), dtype=torch.float32, device=dev)
        out = buf[0][:len(Xt)]
        if mean is not None:
            return torch.sub(Xt, mean, out=out).div_(scale)
        return torch.div(Xt, Xt.norm(dim=1, keepdim=True).clamp_min(1e-30), out=out)

    def closure():
        W32, b32 = W.detach().float(), b.detach().float()
        acc = torch.zeros(1 + k * d + k, dtype=torch.float64, device=dev)
        with torch.no_grad():
            for X, y in blocks:
                Xt = normalised(_to(X, dev))
                yi = torch.from_numpy(index[y]).to(dev)
                w = cw_t[yi]
                Z = Xt @ W32.T + b32
                if k == 1:
                    yf = yi.to(torch.float32)
                    z = Z[:, 0]
                    pointwise = torch.nn.functional.binary_cross_entropy_with_logits(
                        z, yf, reduction="none")
                    R = (w * (torch.sigmoid(z) - yf))[:, None]
                else:
                    logp = torch.log_softmax(Z, dim=1)
                    pointwise = -logp.gather(1, yi[:, None])[:, 0]
                    R = logp.exp_()
                    R[torch.arange(len(yi), device=dev), yi] -= 1
                    R *= w[:, None]
                acc[0] += (w * pointwise).sum(dtype=torch.float64)
                acc[1:1 + k * d] += (R.T @ Xt).double().reshape(-1)
                acc[1 + k * d:] += R.sum(0, dtype=torch.float64)
            _reduce(acc)
            if not torch.isfinite(acc[0]):    # NaN/inf rows (the standard pass finds them first)
                raise ValueError(_not_finite(blocks))
            Wd = W.detach()
            loss = (acc[0] + (Wd * Wd).sum() / (2 * C)) / sw_sum
            W.grad = ((acc[1:1 + k * d].reshape(k, d) + Wd / C) / sw_sum)
            b.grad = acc[1 + k * d:] / sw_sum
        n_eval[0] += 1
        return loss

    opt.step(closure)
    clf = TorchLogisticRegression(C=float(C), max_iter=max_iter, tol=tol,
                                  class_weight=class_weight, device=device)
    clf.classes_ = classes
    clf.coef_ = W.detach().cpu().numpy()
    clf.intercept_ = b.detach().cpu().numpy()
    clf.n_features_in_ = d
    clf.n_iter_ = np.array([opt.state[opt._params[0]].get("n_iter", n_eval[0])])
    return assemble(norm, clf.to_sklearn())


def _not_finite(blocks) -> str:
    where = getattr(blocks, "path", "the streamed rows")
    return f"{where}: 'embeddings' contains NaN or inf values; re-run the extraction"


def _max_over_ranks(v: int) -> int:
    """The largest ``v`` over the ranks (sums of one-hot slots: gloo has MAX, this is simpler)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(v)], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def _affine(norm: BaseEstimator, dev):
    """The standard scaler's (mean, scale) as float32 device tensors; (None, None) otherwise."""
    import torch

    if not isinstance(norm, StandardScaler):
        return None, None
    return (torch.from_numpy(norm.mean_.astype(np.float32)).to(dev),
            torch.from_numpy(norm.scale_.astype(np.float32)).to(dev))


def _to(X: np.ndarray, dev):
    """A float32 block on ``dev`` (through pinned memory to a GPU, copied asynchronously)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    if dev.type == "cuda":
        return t.pin_memory().to(dev, non_blocking=True)
    return t


def score_streamed(model: Pipeline, blocks, n_classes: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n, n_classes) float32 probabilities, y (n,) labels) of the rows of ``blocks``,
    one block in memory at a time (the scores are n x n_classes, not n x D); columns of
    classes the model never saw are 0, as :func:`.metrics.full_scores` gives them."""
    from .metrics import full_scores

    scores, ys = [np.empty((0, n_classes), np.float32)], [np.empty(0, np.int64)]
    for X, y in blocks:
        scores.append(np.asarray(full_scores(model, X, n_classes)[0], np.float32))
        ys.append(y)
    return np.concatenate(scores), np.concatenate(ys)
