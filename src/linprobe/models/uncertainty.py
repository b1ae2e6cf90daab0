"""Bootstrap confidence intervals for test metrics, and the paired bootstrap between two runs
(:mod:`.compare` applies it to the headline metric).

Resampling is over test samples (rows), with a seeded generator so the numbers are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

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
    _check_alpha(alpha)
    y_true, y_pred_or_score = np.asarray(y_true), np.asarray(y_pred_or_score)
    n = len(y_true)
    if n == 0 or len(y_pred_or_score) != n:
        raise ValueError(f"y_true and y_pred_or_score must be non-empty with the same number of "
                         f"rows; got {n} and {len(y_pred_or_score)}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = _draw(rng, n)
        try:
            with warnings.catch_warnings():
                # A resample can lack a class ("y_pred contains classes not in y_true").
                warnings.simplefilter("ignore", UserWarning)
                v = float(metric_fn(y_true[idx], y_pred_or_score[idx]))
        except ValueError:
            continue
        if np.isfinite(v):
            values.append(v)
    return _percentiles(np.asarray(values, dtype=np.float64), alpha)


def bootstrap_ci_weighted(stat: Callable[[np.ndarray], np.ndarray], n: int, *,
                          n_boot: int = 1000, alpha: float = 0.05,
                          seed: int = 0) -> tuple[float, float]:
    """:func:`bootstrap_ci` for a metric given as ``stat(W) -> (m,)``: its value under sample
    weights W (m, n), the draw counts of m resamples (e.g. :func:`.metrics.accuracy_weighted`).

    Same resamples (same seed, same draws) and the same interval as :func:`bootstrap_ci` of the
    equivalent row metric, but the resamples are scored in a few array operations per chunk
    instead of one Python call each. Undefined resamples are NaN in ``stat``'s output and
    dropped.
    """
    return bootstrap_cis_weighted({"": stat}, n, n_boot=n_boot, alpha=alpha, seed=seed)[""]


def bootstrap_cis_weighted(stats: Mapping[str, Callable[[np.ndarray], np.ndarray]], n: int, *,
                           n_boot: int = 1000, alpha: float = 0.05,
                           seed: int = 0) -> dict[str, tuple[float, float]]:
    """:func:`bootstrap_ci_weighted` of several metrics of the same n test rows, from one set
    of draws (each metric's interval is what it would get alone with the same seed)."""
    _check_n_boot(n_boot)
    _check_alpha(alpha)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"The 'n' parameter must be an int >= 1 (test samples). Got {n!r} instead.")
    values: dict[str, list[np.ndarray]] = {name: [] for name in stats}
    for W in resample_counts(n, n_boot, seed):
        for name, stat in stats.items():
            values[name].append(np.asarray(stat(W), dtype=np.float64))
    out = {}
    for name, parts in values.items():
        v = np.concatenate(parts)
        out[name] = _percentiles(v[np.isfinite(v)], alpha)
    return out


def _percentiles(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of the defined bootstrap values; (nan, nan) if there are none."""
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"The 'alpha' parameter must be a float in (0, 1). Got {alpha!r} instead.")


def _draw(rng: np.random.Generator, n: int) -> np.ndarray:
    """One resample of n rows: (n,) row indices. The one definition of the resample stream:
    :func:`bootstrap_ci` and :func:`resample_counts` draw the same rows for the same seed."""
    return rng.integers(0, n, n)


def resample_counts(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded bootstrap resamples of n rows as draw counts, in chunks of (m, n) int64: entry
    [r, i] is how often row i was drawn in resample r (each row sums to n). Counts let a
    metric that accepts sample weights (AP, a mean) be computed for many resamples at once;
    chunks keep memory O(chunk * n) for large test sets."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        W = np.empty((m, n), dtype=np.int64)
        for r in range(m):
            W[r] = np.bincount(_draw(rng, n), minlength=n)
        yield W


def paired_bootstrap_stat(stat: Callable[[np.ndarray], np.ndarray], n: int, *,
                          n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """Paired bootstrap of a difference "metric of A minus metric of B" over n test samples.

    stat(W) -> (m,): the difference under sample weights W (m, n) (draw counts from
    :func:`resample_counts`; all ones is the full test set). Both runs are resampled with the
    SAME rows, so the sample-to-sample variation they share cancels. Resamples where the
    difference is undefined (NaN) are dropped. Returns {"diff", "ci": [lo, hi] (percentile),
    "p_value": two-sided, from the bootstrap distribution shifted to the null diff = 0,
    "significant": p_value < alpha, "n", "n_boot"}.
    """
    _check_n_boot(n_boot)
    _check_alpha(alpha)
    diff = float(stat(np.ones((1, n), dtype=np.int64))[0])
    boots = np.concatenate([stat(w) for w in resample_counts(n, n_boot, seed)])
    boots = boots[np.isfinite(boots)]
    if not np.isfinite(diff) or boots.size == 0:
        raise ValueError(f"the compared metric is undefined on these {n} test samples "
                         "(e.g. mAP without any positive label); nothing to compare")
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    # Shift method: under H0 the centred distribution (boots - diff) describes diff's spread.
    extreme = np.abs(boots - diff) >= abs(diff) - 1e-12
    p_value = float((1 + extreme.sum()) / (boots.size + 1))
    return {"diff": diff, "ci": [float(lo), float(hi)], "p_value": p_value,
            "significant": bool(p_value < alpha), "n": int(n), "n_boot": int(n_boot)}


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, *, n_boot: int = 2000,
                     seed: int = 0, alpha: float = 0.05) -> dict:
    """Paired bootstrap of mean(a) - mean(b) for per-sample values aligned by sample.

    correct_a, correct_b: (n,) per-sample 0/1 correctness (or any per-sample metric). Returns
    :func:`paired_bootstrap_stat`'s dict.
    """
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty 1-D arrays of the same "
                         f"length (one value per test sample); got shapes {a.shape} and {b.shape}")
    d = a - b
    return paired_bootstrap_stat(lambda w: w @ d / d.size, d.size, n_boot=n_boot, seed=seed,
                                 alpha=alpha)
