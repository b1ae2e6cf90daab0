"""The hardware floor under a probe's time: measured streaming bandwidth and matmul throughput,
and a count of the passes over the embeddings that a fit makes.

floor(passes) = max(bytes streamed / bandwidth, FLOP / matmul rate): the time a fit would take if
every pass ran at the measured memory bandwidth and every multiply at the measured sgemm rate.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


def _best(fn, repeats: int = 3) -> float:
    fn()                                       # warm-up (page faults, thread start)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(X: np.ndarray) -> dict:
    """Streaming bandwidth (bytes/s: the best of X @ v with numpy and torch over the whole
    matrix X (n, D) float32) and matmul throughput (FLOP/s: X[:8192] @ (D, D)), under the
    caller's thread limits."""
    import torch
    v = np.ones(X.shape[1], X.dtype)
    Xt, vt = torch.from_numpy(X), torch.from_numpy(v)
    t_np = _best(lambda: X @ v)
    t_torch = _best(lambda: torch.mv(Xt, vt))
    rows = X[:8192]
    B = np.random.default_rng(0).standard_normal((X.shape[1], X.shape[1])).astype(X.dtype)
    t_mm = _best(lambda: rows @ B)
    return {"bandwidth_GBps": X.nbytes / min(t_np, t_torch) / 1e9,
            "bandwidth_numpy_GBps": X.nbytes / t_np / 1e9,
            "bandwidth_torch_GBps": X.nbytes / t_torch / 1e9,
            "matmul_GFLOPs": 2.0 * rows.shape[0] * X.shape[1] ** 2 / t_mm / 1e9,
            "matrix_MB": X.nbytes / 1e6}


@dataclass
class Passes:
    """Bytes of X streamed and FLOP done by the solvers' loss-and-gradient evaluations."""
    bytes: float = 0.0
    flop: float = 0.0
    uncounted: set = field(default_factory=set)   # solvers that ran but report nothing

    def add(self, passes: float, X, k: int) -> None:
        n, d = X.shape
        self.bytes += passes * n * d * X.dtype.itemsize
        self.flop += passes * 2.0 * n * d * k        # one pass = one (n, D) x (D, K) product

    def row(self, full_bytes: float, hw: dict) -> dict:
        """passes (in units of the full matrix of ``full_bytes``) and the floor in seconds;
        None where a solver's passes are unknown (liblinear)."""
        if self.uncounted:
            return {"passes": None, "floor_s": None, "uncounted": sorted(self.uncounted)}
        floor = max(self.bytes / (hw["bandwidth_GBps"] * 1e9), self.flop / (hw["matmul_GFLOPs"] * 1e9))
        return {"passes": self.bytes / full_bytes, "floor_s": floor}


@contextlib.contextmanager
def count_passes() -> Iterator[Passes]:
    """Count the passes over X of every fit inside the block.

    sklearn's lbfgs (LogisticRegression, binary or multinomial): every call of its
    ``LinearModelLoss.loss_gradient`` makes X @ W and X.T @ G, two passes. linprobe's torch
    solvers: the ``n_passes_`` a fit reports. liblinear (LinearSVC) reports neither: marked
    uncounted. Scoring passes (predict on val/test) are not counted. The wrappers call the
    original methods (instrumentation, nothing replaced) and are removed on exit.
    """
    from sklearn.linear_model._linear_loss import LinearModelLoss
    from sklearn.svm import LinearSVC

    from linprobe.models import torch_ovr, torch_svm  # noqa: F401  (register their TorchLinear subclasses)
    from linprobe.models.torch_lbfgs import TorchLinear

    counter = Passes()
    patched: list[tuple[type, str, object]] = []

    def wrap(cls: type, name: str, make) -> None:
        orig = cls.__dict__[name]
        patched.append((cls, name, orig))
        setattr(cls, name, make(orig))

    def sk_loss(orig):
        def loss_gradient(self, coef, X, y, *args, **kwargs):
            k = coef.size // (X.shape[1] + int(self.fit_intercept))
            counter.add(2, X, k)
            return orig(self, coef, X, y, *args, **kwargs)
        return loss_gradient

    def torch_fit(orig):
        def fit(self, X, y, *args, **kwargs):
            out = orig(self, X, y, *args, **kwargs)
            if getattr(self, "n_passes_", None) is None:
                counter.uncounted.add(type(self).__name__)
            else:
                counter.add(self.n_passes_, np.asarray(X), self.coef_.shape[0])
            return out
        return fit

    def liblinear_fit(orig):
        def fit(self, *args, **kwargs):
            counter.uncounted.add("LinearSVC (liblinear)")
            return orig(self, *args, **kwargs)
        return fit

    wrap(LinearModelLoss, "loss_gradient", sk_loss)
    wrap(LinearSVC, "fit", liblinear_fit)
    todo = [TorchLinear]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if "fit" in cls.__dict__:
            wrap(cls, "fit", torch_fit)
    try:
        yield counter
    finally:
        for cls, name, orig in reversed(patched):
            setattr(cls, name, orig)
