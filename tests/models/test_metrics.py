"""Metrics against sklearn and hand computations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             f1_score, top_k_accuracy_score)

from linprobe.models import metrics as M


def test_multiclass_metrics_match_sklearn_on_hand_made_case():
    y = np.array([0, 0, 1, 1, 2, 2, 3, 4, 4, 4])
    pred = np.array([0, 1, 1, 1, 2, 0, 3, 4, 4, 2])
    rng = np.random.default_rng(0)
    scores = rng.random((10, 5)).astype(np.float32)
    names = list("abcde")
    out = M.multiclass_metrics(y, pred, scores, names)
    s = out["summary"]
    assert s["accuracy"] == 0.7 == accuracy_score(y, pred)
    assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    # recalls: a 1/2, b 2/2, c 1/2, d 1/1, e 2/3
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5 + 1 + 2 / 3) / 5)
    assert s["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert out["per_class"]["e"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                     "f1": pytest.approx(0.8), "support": 3}
    assert out["confusion_matrix"][0] == [1, 1, 0, 0, 0]
    # Top-5 of 5 classes is trivially 1.0, so it is only reported above 5 classes.
    assert "top5_accuracy" not in M.multiclass_metrics(y, pred, scores, names)["summary"]
    six = M.multiclass_metrics(y, pred, np.column_stack([scores, scores[:, :1]]), names + ["f"])
    assert six["summary"]["top5_accuracy"] == top_k_accuracy_score(
        y, np.column_stack([scores, scores[:, :1]]), k=5, labels=range(6))


def test_average_precision_known_values():
    Y = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.1], [0.8, 0.7], [0.7, 0.2], [0.1, 0.3]])
    # class 0 ranked: + - + -  -> AP = (1/1 + 2/3) / 2
    assert average_precision_score(Y[:, 0], s[:, 0]) == pytest.approx(5 / 6)
    assert M.mean_ap(Y, s) == pytest.approx((5 / 6 + 1.0) / 2)
    assert M.micro_ap(Y, s) == pytest.approx(average_precision_score(Y, s, average="micro"))
    # A class without positives is left out of the mean instead of producing NaN.
    Y3 = np.column_stack([Y, np.zeros(4, int)])
    assert M.mean_ap(Y3, np.column_stack([s, s[:, 0]])) == pytest.approx((5 / 6 + 1.0) / 2)


def test_multilabel_metrics_and_tuned_thresholds():
    Y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    s = np.array([[0.6, 0.2, 0.1], [0.4, 0.9, 0.2], [0.3, 0.5, 0.3], [0.1, 0.1, 0.2]])
    thr = M.tune_thresholds(Y, s, default=0.5)
    # class 0: positives 0.6, 0.4, best cut keeps both -> halfway to 0.3; class 1: halfway
    # between 0.5 and 0.2; class 2 has no positives -> default.
    assert thr == pytest.approx([0.35, 0.35, 0.5])
    # Constant scores (a class the selection fit never saw) keep the default too.
    flat = s.copy()
    flat[:, 1] = 0.0
    assert M.tune_thresholds(Y, flat, default=0.5)[1] == 0.5
    out = M.multilabel_metrics(Y, s, thr, list("abc"))
    assert out["summary"]["subset_accuracy"] == 1.0 and out["summary"]["hamming_loss"] == 0.0
    assert out["summary"]["mAP"] == 1.0 and out["summary"]["macro_f1"] == 1.0
    assert out["missing"] == ["c"] and out["per_class"]["c"]["ap"] is None
    assert out["per_class"]["a"] == {"ap": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0,
                                     "support": 2, "threshold": pytest.approx(0.35)}
    pred = (s >= thr).astype(int)
    assert out["summary"]["micro_f1"] == f1_score(Y, pred, average="micro")


def test_pr_curve_is_downsampled_with_ends_kept():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    curve = M.pr_curve(y, rng.random(500))
    assert len(curve["precision"]) <= 50 and len(curve["precision"]) == len(curve["recall"])
    assert curve["recall"][0] == 1.0 and curve["recall"][-1] == 0.0


def test_full_scores_keeps_columns_of_classes_absent_from_training():
    X = np.array([[0.0], [1.0], [3.0], [4.0]])
    clf = LogisticRegression().fit(X, [0, 0, 2, 2])         # class 1 of 3 never seen
    scores, kind = M.full_scores(clf, X, 3)
    assert kind == "probability" and scores.shape == (4, 3) and (scores[:, 1] == 0).all()
    assert np.allclose(scores[:, [0, 2]], clf.predict_proba(X))


def test_fast_balanced_accuracy_and_macro_f1_equal_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n, k = rng.integers(1, 60), rng.integers(2, 8)
        y = rng.integers(0, k, n)
        pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, k + 1, n))  # may add a class
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # "y_pred contains classes not in y_true"
            ref_bal = balanced_accuracy_score(y, pred)
            ref_f1 = f1_score(y, pred, average="macro", zero_division=0)
        assert M.balanced_accuracy(y, pred) == pytest.approx(ref_bal, abs=1e-12), (y, pred)
        assert M.macro_f1(y, pred) == pytest.approx(ref_f1, abs=1e-12), (y, pred)
