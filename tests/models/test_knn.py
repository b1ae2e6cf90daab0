"""CosineKNNClassifier: sklearn's estimator checks, and DINO's vote on a hand-made case."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import check_estimator

from linprobe.models.knn import CosineKNNClassifier


def test_passes_sklearn_estimator_checks():
    results = check_estimator(CosineKNNClassifier(), on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == []
    # Skipped only for optional dependencies absent here (pandas input, array API).
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input", "check_classifier_data_not_an_array",
                       "check_estimators_dtypes", "check_dataframe_column_names_consistency"}
    assert sum(r["status"] == "passed" for r in results) >= 45


def test_weighted_vote_matches_hand_computation():
    # Train points on the unit circle; the query is at angle 0.
    ang = np.array([0.1, 0.2, 0.3, 2.0])
    X = np.column_stack([np.cos(ang), np.sin(ang)]) * np.array([[1], [5], [2], [3]])  # scale is ignored
    y = np.array(["a", "b", "b", "a"])
    knn = CosineKNNClassifier(n_neighbors=3, temperature=0.1).fit(X, y)
    proba = knn.predict_proba(np.array([[2.0, 0.0]]))[0]
    w = np.exp(np.cos(ang[:3]) / 0.1)            # 3 nearest: 0.1 (a), 0.2 (b), 0.3 (b)
    expected_a = w[0] / w.sum()
    assert knn.classes_.tolist() == ["a", "b"]
    assert proba[0] == pytest.approx(expected_a, rel=1e-6)
    assert knn.predict(np.array([[2.0, 0.0]]))[0] == "b"    # two weaker votes beat one stronger
    # With k = 1 the single nearest (class a) wins.
    assert CosineKNNClassifier(n_neighbors=1).fit(X, y).predict([[1.0, 0.0]])[0] == "a"


def test_k_larger_than_train_set_is_clipped_and_float32_kept():
    X = np.eye(3, dtype=np.float32)
    knn = CosineKNNClassifier(n_neighbors=50).fit(X, [0, 1, 2])
    assert knn.predict_proba(X).shape == (3, 3)
    assert knn._train.dtype == np.float32


@pytest.mark.parametrize("params, match", [
    ({"n_neighbors": 0}, "'n_neighbors' parameter of CosineKNNClassifier must be an int >= 1"),
    ({"temperature": -1.0}, "'temperature' parameter of CosineKNNClassifier must be a float > 0"),
])
def test_bad_parameters_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        CosineKNNClassifier(**params).fit(np.eye(2), [0, 1])
