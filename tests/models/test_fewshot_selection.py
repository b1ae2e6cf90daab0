"""Few-shot sampling (train only) and selection with warm starts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from linprobe.models.fewshot import few_shot_curve, sample_k_shot
from linprobe.models.options import resolve_options
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
    opts = resolve_options({"grid": [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]}, spec,
                           "multiclass", FMNIST_CLASSES)
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
    scheme, folds = make_folds(y, np.zeros(30, bool), "kfold", folds=5, val_fraction=0.2, seed=0)
    assert scheme == "kfold" and len(folds) == 5
    assert sorted(np.concatenate([f.eval_idx for f in folds]).tolist()) == list(range(30))
    assert all(np.bincount(y[f.eval_idx]).tolist() == [4, 2] for f in folds)
    with pytest.raises(ValueError, match="Lower the 'folds' option"):
        make_folds(y[:3], np.zeros(3, bool), "kfold", folds=5, val_fraction=0.2, seed=0)
