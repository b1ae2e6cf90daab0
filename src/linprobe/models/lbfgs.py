"""Loss-and-gradient of the linear probes without autograd, and the L-BFGS driver they share.

A probe's objective is a sum over row blocks of X plus an L2 penalty,

    f(W, b) = sum_blocks sum_i sum_k S_ik * loss(z_ik, T_ik) + 0.5 * sum_k r_k * ||W_k||^2
              (+ 0.5 * sum_k r_k * b_k^2 where the bias is penalised, as liblinear does)

with z = X W^T + b (n, K), targets T and per-sample, per-problem weights S (n, K) (the class
weights, already divided by the problem's normaliser), r (K,) the penalty per output row. One
evaluation makes one ``X_b @ W.T`` and one ``G_b.T @ X_b`` per block (G = d loss / d z), i.e. two
passes over X: that is what ``n_passes`` counts, the quantity a memory-bandwidth floor is
computed from. Everything runs in X's dtype (float32 for embeddings) with the loss summed in
float64. Because the objective is a plain sum over blocks, the blocks may come from memory, from
a file, or from several processes (summing their loss and gradients) without changing the
optimum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

LOSSES = ("softmax", "sigmoid", "squared_hinge")


@dataclass
class Block:
    """Rows of the problem: X (m, D), targets T (m,) class indices for softmax, else (m, K)
    {0, 1} (sigmoid) or {-1, +1} (squared hinge), weights S (m,) for softmax else (m, K)."""
    X: "torch.Tensor"
    T: "torch.Tensor"
    S: "torch.Tensor"


def block_loss_grad(loss: str, blk: Block, W, b) -> tuple[float, "torch.Tensor", "torch.Tensor"]:
    """One block's weighted data loss (float) and its gradients (K, D), (K,)."""
    import torch

    Z = torch.addmm(b, blk.X, W.T)                      # pass 1 over the block
    if loss == "softmax":
        lse = torch.logsumexp(Z, dim=1)
        value = float((blk.S * (lse - Z.gather(1, blk.T[:, None])[:, 0])).sum(dtype=torch.float64))
        G = torch.exp(Z - lse[:, None])
        G[torch.arange(len(G), device=G.device), blk.T] -= 1
        G *= blk.S[:, None]
    elif loss == "sigmoid":
        # BCE with logits: softplus(z) - t z, gradient sigmoid(z) - t.
        value = float((blk.S * (torch.nn.functional.softplus(Z) - blk.T * Z))
                      .sum(dtype=torch.float64))
        G = (torch.sigmoid(Z) - blk.T) * blk.S
    elif loss == "squared_hinge":
        h = torch.relu(1 - blk.T * Z)
        value = float((blk.S * h * h).sum(dtype=torch.float64))
        G = -2 * blk.S * blk.T * h
    else:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    return value, G.T @ blk.X, G.sum(dim=0)             # pass 2 over the block


@dataclass
class Result:
    """Minimiser W (K, D), b (K,) as numpy; L-BFGS iterations; loss+gradient evaluations."""
    W: np.ndarray
    b: np.ndarray
    n_iter: int
    n_evals: int

    @property
    def n_passes(self) -> int:
        """Full passes over X: two per evaluation."""
        return 2 * self.n_evals


def minimize(loss: str, blocks: Callable[[], Iterable[Block]], W0, b0, r, *,
             penalize_bias: bool, max_iter: int, tol: float, min_iter: int = 0,
             reduce: Callable[[list], list] | None = None) -> Result:
    """L-BFGS (strong Wolfe, history 10) from W0 (K, D), b0 (K,) torch tensors until
    max |gradient| <= tol (sklearn's lbfgs rule), after at least ``min_iter`` iterations (so a
    warm start whose gradient is already under a loose tol still moves), or ``max_iter``.

    ``blocks()`` yields the problem's row blocks afresh for every evaluation; r (K,) the penalty
    per output row; ``reduce`` (optional) sums [loss, gW, gb] across processes (e.g. an
    all-reduce) before the penalty is added.
    """
    import torch

    W = W0.detach().clone().requires_grad_(True)
    b = b0.detach().clone().requires_grad_(True)
    r_col = r[:, None]
    n_evals = 0
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=0.0,
                            tolerance_change=64 * np.finfo(float).eps, history_size=10,
                            line_search_fn="strong_wolfe")

    def closure():
        nonlocal n_evals
        value, gW, gb = 0.0, torch.zeros_like(W), torch.zeros_like(b)
        with torch.no_grad():
            for blk in blocks():
                v, dW, db = block_loss_grad(loss, blk, W, b)
                value, gW, gb = value + v, gW + dW, gb + db
            if reduce is not None:
                value, gW, gb = reduce([value, gW, gb])
            value += 0.5 * float((r_col * W * W).sum(dtype=torch.float64))
            gW += r_col * W
            if penalize_bias:
                value += 0.5 * float((r * b * b).sum(dtype=torch.float64))
                gb += r * b
            # The stopping rule lives here because torch's LBFGS knows only max |g| <=
            # tolerance_grad (set to 0): a zeroed gradient satisfies the line search's curvature
            # condition and then ends the run, at this point.
            done = opt.state[opt._params[0]].get("n_iter", 0) >= min_iter and \
                float(torch.maximum(gW.abs().max(), gb.abs().max())) <= tol
        W.grad, b.grad = (gW.zero_(), gb.zero_()) if done else (gW, gb)
        n_evals += 1
        return torch.tensor(value, dtype=torch.float64)

    opt.step(closure)
    n_iter = opt.state[opt._params[0]].get("n_iter", 0)
    return Result(W.detach().cpu().numpy(), b.detach().cpu().numpy(), int(n_iter), n_evals)
