"""The vectorised bootstrap intervals and the one-pass few-shot scoring give the same numbers
as the per-resample / per-model computations they replace (same seeds, same draws)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from linprobe.models import metrics as M
from linprobe.models.fewshot import few_shot_curve, sample_k_shot
from linprobe.models.knn import CosineKNNClassifier
from linprobe.models.probes import assemble, make_normalizer
from linprobe.models.uncertainty import (bootstrap_ci, bootstrap_ci_weighted, bootstrap_cis_weighted,
                                         resample_counts)

from .conftest import blobs, split_names

ROW_METRICS = {"accuracy": (lambda y, p: float(np.mean(y == p)), M.accuracy_weighted),
               "balanced_accuracy": (M.balanced_accuracy, M.balanced_accuracy_weighted),
               "macro_f1": (M.macro_f1, M.macro_f1_weighted)}


def test_resample_counts_are_the_rows_bootstrap_ci_draws():
    n, seen = 37, []
    bootstrap_ci(lambda y, p: seen.append(y.copy()) or 0.0, np.arange(n), np.arange(n),
                 n_boot=25, seed=4)
    W = np.concatenate(list(resample_counts(n, 25, seed=4)))
    assert W.shape == (25, n)
    assert all(np.array_equal(w, np.bincount(rows, minlength=n)) for w, rows in zip(W, seen))


@pytest.mark.parametrize("name", sorted(ROW_METRICS))
@pytest.mark.parametrize("n, n_classes", [(40, 5), (500, 10)])
def test_weighted_bootstrap_equals_the_per_resample_loop(name, n, n_classes):
    # Imbalanced, with a rare class that many small resamples miss and a class never predicted.
    rng = np.random.default_rng(n)
    y = rng.choice(n_classes, n, p=np.r_[0.02, np.full(n_classes - 1, 0.98 / (n_classes - 1))])
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, n_classes - 1, n))
    row, weighted = ROW_METRICS[name]
    for seed, alpha in [(0, 0.05), (3, 0.2)]:
        old = bootstrap_ci(row, y, pred, n_boot=300, alpha=alpha, seed=seed)
        new = bootstrap_ci_weighted(weighted(y, pred), n, n_boot=300, alpha=alpha, seed=seed)
        assert new == pytest.approx(old, abs=1e-12)
        assert old[0] < old[1]
    # Weighted by all ones it is the plain metric.
    assert weighted(y, pred)(np.ones((1, n)))[0] == pytest.approx(row(y, pred), abs=1e-12)


def test_weighted_map_bootstrap_equals_the_per_resample_loop():
    rng = np.random.default_rng(1)
    Y = (rng.random((60, 4)) < [0.5, 0.3, 0.05, 0.0]).astype(np.uint8)   # one class never positive
    S = np.round(Y + rng.normal(scale=0.8, size=Y.shape), 1).astype(np.float32)  # with ties
    old = bootstrap_ci(M.mean_ap, Y, S, n_boot=200, seed=2)
    new = bootstrap_ci_weighted(M.mean_ap_weighted(Y, S), 60, n_boot=200, seed=2)
    assert new == pytest.approx(old, abs=1e-9)


def test_weighted_bootstrap_checks_its_parameters():
    f = M.accuracy_weighted(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="The 'n_boot' parameter must be an int >= 1"):
        bootstrap_ci_weighted(f, 3, n_boot=0)
    with pytest.raises(ValueError, match="The 'alpha' parameter must be a float in"):
        bootstrap_ci_weighted(f, 3, alpha=1.5)
    with pytest.raises(ValueError, match="The 'n' parameter must be an int >= 1"):
        bootstrap_ci_weighted(f, 0)


def _reference_curve(build, X_tr, y_tr, X_te, y_te, ks, seeds, score):
    """The per-model loop few_shot_curve used to run (fit, then score, one model at a time)."""
    max_count = np.unique(y_tr, return_counts=True)[1].max()
    out = []
    for k in ks:
        if out and out[-1][0] >= max_count:
            break
        vals = []
        for s in range(seeds):
            idx = sample_k_shot(y_tr, k, seed=s)
            vals.append(score(build().fit(X_tr[idx], y_tr[idx]), X_te, y_te))
        out.append((k, vals))
    return out


def _accuracy(model, X, y):
    scores, _ = M.full_scores(model, X, 10)
    return float(np.mean(np.argmax(scores, axis=1) == y))


@pytest.mark.parametrize("normalize, clf, n_classes", [
    ("standard", lambda: LogisticRegression(C=0.5, max_iter=200), 10),
    ("none", lambda: LogisticRegression(C=0.5, max_iter=200), 10),
    ("standard", lambda: LogisticRegression(C=0.5, max_iter=200), 2),     # binary: one column
    ("standard", lambda: LinearSVC(C=0.1, max_iter=2000), 10),           # decision values
])
def test_one_pass_few_shot_scores_equal_per_model_scores(normalize, clf, n_classes):
    X, y = blobs(40, n_classes, 24, sep=0.35, seed=2)
    X = X * np.linspace(0.5, 3, 24, dtype=np.float32) + 2    # unscaled, off-centre features
    split = split_names(y, (0.6, 0.0, 0.4), seed=0)
    tr, te = split == "train", split == "test"
    build = lambda: assemble(make_normalizer(normalize), clf())            # noqa: E731
    ks = [1, 2, 4, 8, 100]
    out = few_shot_curve(build, X, y[tr], X[te], y[te], ks=ks, seeds=3, score=_accuracy,
                         metric="accuracy", train_rows=np.flatnonzero(tr))
    ref = _reference_curve(build, X[tr], y[tr], X[te], y[te], ks, 3, _accuracy)
    assert out["k"] == [k for k, _ in ref]
    assert out["scores"] == [pytest.approx(v, abs=1e-12) for _, v in ref]
    assert len(set(np.round(np.concatenate(out["scores"]), 6))) > 3     # not a constant curve
    per_model = few_shot_curve(build, X[tr], y[tr], X[te], y[te], ks=ks, seeds=3,
                               score=_accuracy, metric="accuracy", batched=False)
    assert per_model == out


def test_few_shot_of_a_non_linear_probe_uses_its_score():
    X, y = blobs(20, 3, 8, sep=1.0)
    split = split_names(y, (0.5, 0.0, 0.5))
    tr, te = split == "train", split == "test"
    build = lambda: assemble(make_normalizer("l2"), CosineKNNClassifier(n_neighbors=1))  # noqa: E731
    calls = []

    def score(m, X_, y_):
        calls.append(1)
        return float(np.mean(m.predict(X_) == y_))
    out = few_shot_curve(build, X[tr], y[tr], X[te], y[te], ks=[1, 3], seeds=2, score=score,
                         metric="accuracy")
    assert len(calls) == 4 and len(out["scores"]) == 2
    ref = _reference_curve(build, X[tr], y[tr], X[te], y[te], [1, 3], 2, score)
    assert out["scores"] == [v for _, v in ref]


def test_several_intervals_from_one_set_of_draws_equal_each_alone():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 6, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 6, 300))
    stats = {name: weighted(y, pred) for name, (_, weighted) in ROW_METRICS.items()}
    together = bootstrap_cis_weighted(stats, 300, n_boot=150, seed=5)
    assert together == {name: bootstrap_ci_weighted(f, 300, n_boot=150, seed=5)
                        for name, f in stats.items()}


def test_confusion_of_many_classes_sums_each_cells_rows():
    # 3000 classes: the one-hot product would be too large, so cells are summed by rows.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3000, 12000)
    pred = np.where(rng.random(12000) < 0.5, y, rng.integers(0, 3000, 12000))
    W = np.concatenate(list(resample_counts(12000, 3, seed=1)))
    cm = M.confusion_weighted(y, pred)(W)
    assert cm.shape == (3, 3000, 3000)
    for w, c in zip(W, cm):
        idx = np.repeat(np.arange(12000), w)
        assert np.array_equal(c, M._confusion(y[idx], pred[idx]).astype(float)[:3000, :3000])
