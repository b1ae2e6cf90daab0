"""Statistics the report needs: MMD, 2-D projections, most-confused pairs.

Pure numpy/scikit-learn (never torch). Bootstrap CIs come from ``linprobe.models.uncertainty``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _sq_dists(x: np.ndarray) -> np.ndarray:
    """(n, n) squared Euclidean distances of rows of x (n, D), clipped at 0."""
    sq = np.einsum("ij,ij->i", x, x)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d, 0.0, out=d)
    return d


def _mmd2_unbiased(k: np.ndarray, in_a: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each partition of the pooled sample into A and B.

    k: (n, n) joint kernel matrix; in_a: (P, n) boolean masks of sample A (one row per partition).
    Returns (P,). Block sums come from one matrix product (k @ W) instead of P sub-matrix
    copies, so a 200-permutation test costs about one pass over k per 200 columns.
    """
    w = in_a.T.astype(np.float64)  # (n, P)
    kw = k @ w
    row = k.sum(axis=1)
    diag = np.diag(k)
    m = w.sum(axis=0)
    n = len(k) - m
    s_aa = (w * kw).sum(axis=0)
    s_ab = w.T @ row - s_aa
    s_bb = row.sum() - s_aa - 2.0 * s_ab
    tr_a = w.T @ diag
    tr_b = diag.sum() - tr_a
    # Unbiased: drop the diagonal (self-similarity) terms within each sample.
    return (s_aa - tr_a) / (m * (m - 1)) + (s_bb - tr_b) / (n * (n - 1)) - 2.0 * s_ab / (m * n)


def mmd_test(
    x: np.ndarray, y: np.ndarray, *, n_perm: int = 200, max_samples: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Unbiased MMD^2 between x (m, D) and y (n, D), RBF kernel, permutation p-value.

    The bandwidth is the median pairwise distance of the pooled sample (median heuristic).
    Each side is subsampled to ``max_samples`` rows so the cost stays O(max_samples^2).
    Returns {"mmd2", "p_value", "bandwidth", "n_perm", "n_x", "n_y"}.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd_test needs two (n, D) arrays with equal D, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"mmd_test needs at least 2 rows per sample, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    if len(y) > max_samples:
        y = y[rng.choice(len(y), max_samples, replace=False)]
    z = np.vstack([x, y])
    d2 = _sq_dists(z)
    off_diag = d2[np.triu_indices(len(z), k=1)]
    med = float(np.median(np.sqrt(off_diag)))
    bandwidth = med if med > 0 else 1.0
    k = np.exp(-d2 / (2.0 * bandwidth**2))
    in_a = np.zeros(len(z), dtype=bool)
    in_a[: len(x)] = True
    # Permutation test: relabel the pooled rows; the kernel matrix is reused, only masks change.
    perms = np.stack([in_a] + [rng.permutation(in_a) for _ in range(n_perm)])
    values = _mmd2_unbiased(k, perms)
    observed = float(values[0])
    exceed = int(np.sum(values[1:] >= observed))
    return {"mmd2": observed, "p_value": (exceed + 1) / (n_perm + 1), "bandwidth": bandwidth,
            "n_perm": n_perm, "n_x": len(x), "n_y": len(y)}


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Project x (n, D) onto its first two principal components -> ((n, 2), explained ratios)."""
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    n_comp = min(2, x.shape[0], x.shape[1])
    pca = PCA(n_components=n_comp, random_state=0)
    z = pca.fit_transform(x)
    if n_comp < 2:  # degenerate input: pad so callers can always plot two axes
        z = np.hstack([z, np.zeros((len(z), 2 - n_comp))])
    return z, [float(r) for r in pca.explained_variance_ratio_]


def tsne_2d(x: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """t-SNE embedding (n, 2) of x (n, D); perplexity scaled down for small n."""
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float32)
    perplexity = float(max(2, min(30, (len(x) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def top_confused_pairs(
    confusion: np.ndarray, class_names: list[str], *, k: int = 5
) -> list[dict[str, Any]]:
    """The k largest off-diagonal cells of a (C, C) count matrix (rows true, cols predicted).

    Each item: {"actual", "predicted", "count", "rate"} with rate = count / row total.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:k]
    rows = cm.sum(axis=1)
    out = []
    for flat in order:
        i, j = np.unravel_index(flat, cm.shape)
        if off[i, j] <= 0:
            break
        out.append({"actual": class_names[i], "predicted": class_names[j], "count": int(cm[i, j]),
                    "rate": float(cm[i, j] / rows[i]) if rows[i] else 0.0})
    return out


def normalise_rows(confusion: np.ndarray) -> np.ndarray:
    """Row-normalised (C, C) confusion matrix (recall per true class); empty rows stay 0."""
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
