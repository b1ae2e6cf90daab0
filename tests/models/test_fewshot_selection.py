"""Few-shot sampling (train only) and selection with warm starts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from linprobe.models.fewshot import few_shot_curve, sample_k_shot
from linprobe.models.options import LogregOptions, resolve_options
from linprobe.models.probes import get_probe
from linprobe.models.selection import make_folds, select

from .conftest import FMNIST_CLASSES, blobs


def test_sample_k_shot_counts_and_determinism():
    y = np.repeat([0, 1, 2], [10, 3, 7])
    idx = sample_k_shot(y, 4, seed=0)
    assert np.bincount(y[idx]).tolist() == [4, 3, 4]        # class 1 has only 3
    assert np.array_equal(idx, sample_k_shot(y, 4, seed=0))
    assert not np.array_equal(idx, sample_k_shot(y, 4, seed=1))
    Y = np.zeros((20, 3), np.uint8)
    Y[:8, 0], Y[5:12, 1], Y[15:, 2] = 1, 1, 1
    idx = sample_k_shot(Y, 2, seed=0)
    assert (Y[idx].sum(axis=0) >= 2).all()


class Recorder(ClassifierMixin, BaseEstimator):
    """Records the rows it is fitted on; predicts the majority class."""
    seen: list = []

    def fit(self, X, y):
        Recorder.seen.append(X[:, 0].copy())
        self.classes_, counts = np.unique(y, return_counts=True)
        self.majority_ = self.classes_[np.argmax(counts)]
        return self

    def predict(self, X):
        return np.full(len(X), self.majority_)


def test_few_shot_never_fits_on_rows_outside_train():
    X, y = blobs(12, 3, 2, sep=1.0)
    X[:, 0] = np.arange(len(X))                              # row id in column 0
    train = np.arange(len(X)) % 3 != 0                       # the rest plays val/test
    Recorder.seen = []
    out = few_shot_curve(Recorder, X[train], y[train], X[~train], y[~train], ks=[1, 2, 4, 100],
                         seeds=3, score=lambda m, X, y: float(np.mean(m.predict(X) == y)),
                         metric="accuracy")
    fitted = np.concatenate(Recorder.seen)
    assert set(fitted.astype(int)) <= set(np.flatnonzero(train))
    assert out["k"] == [1, 2, 4, 100][:len(out["k"])] and len(Recorder.seen) == 3 * len(out["k"])
    assert out["n_train"][0] == 3 and len(out["mean"]) == len(out["std"]) == len(out["k"])


def test_logreg_selection_warm_starts_along_the_grid(fmnist_small):
    from linprobe.features.store import read_embeddings
    es = read_embeddings(fmnist_small)
    tv = ~es.mask("test")
    X, y, is_val = es.embeddings[tv], es.labels[tv], es.mask("val")[tv]
    spec = get_probe("logreg")
    # sklearn's lbfgs (warm_start=True) on the plain grid; the torch path has its own tests.
    opts = resolve_options(LogregOptions(grid=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
                                         solver="sklearn"), "multiclass", FMNIST_CLASSES)
    warm = select(spec, opts, 0, X, y, is_val, 10)
    cold = select(dataclasses.replace(spec, warm_start=False), opts, 0, X, y, is_val, 10)
    assert warm.scheme == "val" and warm.n_fits == 7 and len(warm.curve) == 7
    assert warm.eval_scores.shape == (is_val.sum(), 10)
    # Same optimum (strictly convex objective), fewer iterations from the neighbour's solution.
    assert warm.value == cold.value
    assert [p["score"] for p in warm.curve] == pytest.approx([p["score"] for p in cold.curve], abs=0.02)
    assert warm.n_iter < 0.8 * cold.n_iter, (warm.n_iter, cold.n_iter)


def test_kfold_folds_are_stratified_and_cover_everything():
    y = np.repeat([0, 1], [20, 10])
    scheme, folds = make_folds(y, np.zeros(30, bool), "kfold", folds=5, holdout_fraction=0.2, seed=0)
    assert scheme == "kfold" and len(folds) == 5
    assert sorted(np.concatenate([f.eval_idx for f in folds]).tolist()) == list(range(30))
    assert all(np.bincount(y[f.eval_idx]).tolist() == [4, 2] for f in folds)
    with pytest.raises(ValueError, match="Lower the 'folds' option"):
        make_folds(y[:3], np.zeros(3, bool), "kfold", folds=5, holdout_fraction=0.2, seed=0)


@pytest.mark.parametrize("kind", ["standard", "l2", "none"])
def test_normalisation_stays_float32_and_spares_the_callers_array(kind):
    from linprobe.models.probes import normalize_fit_transform
    X = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32) * 3 + 1
    X0 = X.copy()
    norm, Xt, Xo = normalize_fit_transform(kind, X, X[:5])
    assert Xt.dtype == Xo.dtype == np.float32 and np.array_equal(X, X0)
    if kind == "standard":
        assert np.allclose(Xt.mean(0), 0, atol=1e-5) and np.allclose(Xt.std(0), 1, atol=1e-4)
    if kind == "l2":
        assert np.allclose(np.linalg.norm(Xt, axis=1), 1, atol=1e-5)
    own = X.copy()
    _, Xi = normalize_fit_transform(kind, own, inplace=True)
    assert np.allclose(Xi, Xt) and (kind == "none" or np.shares_memory(Xi, own))


def test_fit_scaler_equals_sklearn_without_a_float64_copy():
    import tracemalloc

    from sklearn.preprocessing import StandardScaler

    from linprobe.models.probes import fit_scaler
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(20000, 64)) * rng.uniform(0.1, 50, 64) + 7).astype(np.float32)
    X[:, 3] = 2.5                                            # a constant feature
    ref = StandardScaler().fit(X)
    tracemalloc.start()
    ours = fit_scaler(X, chunk_rows=1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.allclose(ours.mean_, ref.mean_, rtol=1e-6)
    assert np.allclose(ours.var_, ref.var_, rtol=1e-5) and ours.scale_[3] == ref.scale_[3] == 1.0
    assert np.allclose(ours.transform(X[:100]), ref.transform(X[:100]), atol=1e-5)
    # A float64 copy of X would be 2x X.nbytes; chunked sums stay far below one X.
    assert peak < 0.25 * X.nbytes
