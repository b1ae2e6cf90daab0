"""Bootstrap CIs and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from linprobe.models.uncertainty import bootstrap_ci, paired_bootstrap


def acc(y, p):
    return float(np.mean(y == p))


def test_bootstrap_ci_brackets_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 2500):
        y = rng.integers(0, 3, n)
        p = np.where(rng.random(n) < 0.8, y, (y + 1) % 3)
        lo, hi = bootstrap_ci(acc, y, p, n_boot=500, seed=1)
        assert lo < acc(y, p) < hi
        widths.append(hi - lo)
    # Binomial standard error: width ~ 2 * 1.96 * sqrt(.8 * .2 / n).
    assert widths[1] == pytest.approx(2 * 1.96 * np.sqrt(0.16 / 2500), rel=0.25)
    assert widths[1] < widths[0] / 3
    assert bootstrap_ci(acc, y, p, n_boot=50, seed=3) == bootstrap_ci(acc, y, p, n_boot=50, seed=3)


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    n = 1000
    a = (rng.random(n) < 0.85).astype(int)
    b = a.copy()
    flip = rng.choice(n, 60, replace=False)                 # B wrong on 60 more samples
    b[flip] = 0
    res = paired_bootstrap(a, b, seed=0)
    assert res["diff"] == pytest.approx(a.mean() - b.mean())
    assert res["significant"] and res["p_value"] < 0.01
    assert res["ci"][0] > 0
    same = paired_bootstrap(a, a, seed=0)
    assert same["diff"] == 0 and same["p_value"] == 1.0 and not same["significant"]
    # Two runs differing by noise only: swap 5 right answers between them.
    c = a.copy()
    ones, zeros = np.flatnonzero(a == 1)[:5], np.flatnonzero(a == 0)[:5]
    c[ones], c[zeros] = 0, 1
    assert not paired_bootstrap(a, c, seed=0)["significant"]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="'n_boot' parameter must be an int >= 1"):
        bootstrap_ci(acc, np.ones(3), np.ones(3), n_boot=0)
