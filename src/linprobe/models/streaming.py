"""The ``logreg`` probe fitted by streaming its rows: memory bounded by one block, not by N.

:func:`fit_streamed` minimises exactly the objective of
:class:`~linprobe.models.torch_lbfgs.TorchLogisticRegression` (sklearn's lbfgs
LogisticRegression: ``(1 / sum(w)) * [sum_i w_i CE(x_i W^T + b, y_i) + ||W||^2 / (2 C)]``, class
weights ``w``, multinomial for >= 3 classes, one logistic row for 2, intercept not penalised)
with the same driver, loss-and-gradient code, settings and stopping rule
(:func:`.lbfgs.minimize`, :func:`.lbfgs.block_loss_grad`): the in-memory fit is the one-block
case. Each evaluation of the objective is one pass over the row blocks of a :mod:`.blocks`
source, normalised as they are read (``standard``: the statistics of
:func:`.probes.fit_scaler`, from one streamed pass before), in float32 with the loss summed in
float64.

Under torch.distributed (torchrun, gloo on CPU or nccl on GPUs) each rank streams its own share
of the rows (``H5Blocks(..., rank, world)``) and the sums (normaliser statistics, class counts,
loss and gradient, in float64) are all-reduced, so every rank takes the same L-BFGS steps and
ends with the same model, the one process's optimum (tests/models/test_streaming.py).
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
                 init: Pipeline | None = None, normalizer: BaseEstimator | None = None,
                 min_iter: int = 0) -> Pipeline:
    """Fit ``normalize`` + L2 logistic regression on the rows of ``blocks`` (labels: class
    indices >= 0); returns ``Pipeline([("normalize", ...), ("probe", LogisticRegression)])``,
    the saved form of an in-memory fit (its probe's ``n_iter_``: the L-BFGS iterations).
    ``init`` (such a pipeline) warm-starts the solver; ``normalizer`` (fitted on these rows)
    saves the normaliser's pass; ``min_iter``: iterations before the tol may stop the run (the
    path search's loose warm-started fits, :mod:`.selection`)."""
    import torch

    from .lbfgs import Block, minimize

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
    W0, b0 = np.zeros((k, d), np.float32), np.zeros(k, np.float32)
    if init is not None and init.named_steps["probe"].coef_.shape == (k, d):
        W0, b0 = init.named_steps["probe"].coef_, init.named_steps["probe"].intercept_
    # TorchLogisticRegression's parametrisation: weights w / sum(w), penalty 1 / (C sum(w)).
    S_class = torch.from_numpy((cw / sw_sum).astype(np.float32)).to(dev)
    r = torch.full((k,), 1.0 / (float(C) * sw_sum), dtype=torch.float32, device=dev)
    normalised = _normaliser_on(norm, normalize, d, dev)

    def rows():
        """The problem's blocks, read afresh for each evaluation of the objective."""
        for X, y in blocks:
            yi = torch.from_numpy(index[y]).to(dev)
            S = S_class[yi]
            Xt = normalised(_to(X, dev))
            yield (Block(Xt, yi[:, None].to(torch.float32), S[:, None]) if k == 1
                   else Block(Xt, yi, S))

    def sums(parts: list) -> list:
        """[loss, dW, db] summed over the ranks (in float64), refused when not finite."""
        value, gW, gb = parts
        flat = torch.cat([torch.tensor([value], dtype=torch.float64, device=dev),
                          gW.double().reshape(-1), gb.double()])
        _reduce(flat)
        if not torch.isfinite(flat[0]):    # NaN/inf rows (the standard pass finds them first)
            raise ValueError(_not_finite(blocks))
        return [float(flat[0]), flat[1:1 + k * d].reshape(k, d).to(gW.dtype),
                flat[1 + k * d:].to(gb.dtype)]

    res = minimize("sigmoid" if k == 1 else "softmax", rows,
                   torch.from_numpy(np.array(W0, np.float32)).to(dev),
                   torch.from_numpy(np.array(b0, np.float32)).to(dev), r, penalize_bias=False,
                   max_iter=max_iter, tol=tol, min_iter=min_iter, reduce=sums)
    clf = TorchLogisticRegression(C=float(C), max_iter=max_iter, tol=tol,
                                  class_weight=class_weight, device=device)
    clf.classes_ = classes
    clf.coef_, clf.intercept_ = res.W, res.b
    clf.n_features_in_ = d
    clf.n_iter_ = np.array([res.n_iter])
    return assemble(norm, clf.to_sklearn())


def _normaliser_on(norm: BaseEstimator, normalize: str, d: int, dev):
    """A function normalising a float32 device block (m, D) into one buffer reused across
    blocks and passes (grown as needed): fresh arrays of varying size grow glibc's heap."""
    import torch

    mean, scale = _affine(norm, dev)
    buf = [torch.empty((0, d), dtype=torch.float32, device=dev)]

    def normalised(Xt):
        if mean is None and normalize != "l2":
            return Xt
        if len(Xt) > len(buf[0]):
            buf[0] = torch.empty((len(Xt), d), dtype=torch.float32, device=dev)
        out = buf[0][:len(Xt)]
        if mean is not None:
            return torch.sub(Xt, mean, out=out).div_(scale)
        return torch.div(Xt, Xt.norm(dim=1, keepdim=True).clamp_min(1e-30), out=out)

    return normalised


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
