"""Bootstrap confidence intervals for test metrics, and a paired bootstrap between two runs.

Resampling is over test samples (rows), with a seeded generator so the numbers are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import warnings

import numpy as np


def _check_n_boot(n_boot: int) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"The 'n_boot' parameter must be an int >= 1. Got {n_boot!r} instead.")


def bootstrap_ci(metric_fn: Callable[[np.ndarray, np.ndarray], float], y_true: np.ndarray,
                 y_pred_or_score: np.ndarray, *, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of ``metric_fn(y_true, y_pred_or_score)``.

    y_true: (n,) or (n, C); y_pred_or_score: (n,) or (n, C), resampled together by row.
    Resamples where the metric is undefined (NaN, or it raises ValueError, e.g. AP with no
    positives) are dropped; (nan, nan) if none is defined.
    """
    _check_n_boot(n_boot)
    if not 0 < alpha < 1:
        raise ValueError(f"The 'alpha' parameter must be a float in (0, 1). Got {alpha!r} instead.")
    y_true, y_pred_or_score = np.asarray(y_true), np.asarray(y_pred_or_score)
    n = len(y_true)
    if n == 0 or len(y_pred_or_score) != n:
        raise ValueError(f"y_true and y_pred_or_score must be non-empty with the same number of "
                         f"rows; got {n} and {len(y_pred_or_score)}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            with warnings.catch_warnings():
                # A resample can lack a class ("y_pred contains classes not in y_true").
                warnings.simplefilter("ignore", UserWarning)
                v = float(metric_fn(y_true[idx], y_pred_or_score[idx]))
        except ValueError:
            continue
        if np.isfinite(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, *, n_boot: int = 2000,
                     seed: int = 0, alpha: float = 0.05) -> dict:
    """Is run A better than run B on the same test set?

    correct_a, correct_b: (n,) per-sample 0/1 correctness (or any per-sample metric), aligned
    by sample. Both runs are resampled with the SAME indices, so the sample-to-sample variation
    they share cancels. Returns {"diff": mean(a) - mean(b), "ci": [lo, hi] (percentile),
    "p_value": two-sided, from the bootstrap distribution shifted to the null diff = 0,
    "significant": p_value < alpha, "n": n, "n_boot": n_boot}.
    """
    _check_n_boot(n_boot)
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty 1-D arrays of the same "
                         f"length (one value per test sample); got shapes {a.shape} and {b.shape}")
    d = a - b
    diff = float(d.mean())
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    # Chunked so memory stays O(chunk * n) for large test sets.
    chunk = max(1, 2_000_000 // d.size)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        boots[start:start + m] = d[rng.integers(0, d.size, (m, d.size))].mean(axis=1)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    # Shift method: under H0 the centred distribution (boots - diff) describes diff's spread.
    extreme = np.abs(boots - diff) >= abs(diff) - 1e-12
    p_value = float((1 + extreme.sum()) / (n_boot + 1))
    return {"diff": diff, "ci": [float(lo), float(hi)], "p_value": p_value,
            "significant": bool(p_value < alpha), "n": int(d.size), "n_boot": int(n_boot)}
