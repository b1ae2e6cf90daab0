"""The optional torch L-BFGS solver against sklearn's (the reference), on real pixels."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from linprobe.features.store import read_embeddings
from linprobe.models.torch_lbfgs import TorchLogisticRegression
from linprobe.models.train import train_probe


# Same reason as the BLAS limit in conftest: spinning worker threads on a shared box.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pixels(fmnist_small):
    X, y, _ = read_embeddings(fmnist_small).subset("train")
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("C, class_weight", [(0.01, None), (1.0, "balanced")])
def test_same_solution_as_sklearn(pixels, C, class_weight):
    X, y = pixels
    ref = LogisticRegression(C=C, tol=1e-6, max_iter=2000, class_weight=class_weight).fit(X, y)
    ours = TorchLogisticRegression(C=C, tol=1e-6, max_iter=2000, class_weight=class_weight,
                                   device="cpu").fit(X, y)
    # Both stop at max|grad| <= tol in float32: coefficients agree to 2% (measured 0.2-0.5%).
    rel = np.linalg.norm(ours.coef_ - ref.coef_) / np.linalg.norm(ref.coef_)
    assert rel < 0.02
    assert np.mean(ours.predict(X) == ref.predict(X)) >= 0.99
    assert np.allclose(ours.predict_proba(X), ref.predict_proba(X), atol=0.02)
    sk = ours.to_sklearn()
    assert np.array_equal(sk.predict(X), ours.predict(X))


def test_binary_uses_sklearn_single_row_parametrisation(pixels):
    X, y = pixels
    yb = (y == 1).astype(int)
    ref = LogisticRegression(C=0.1, tol=1e-6).fit(X, yb)
    ours = TorchLogisticRegression(C=0.1, tol=1e-6, device="cpu").fit(X, yb)
    assert ours.coef_.shape == ref.coef_.shape == (1, X.shape[1])
    assert np.linalg.norm(ours.coef_ - ref.coef_) / np.linalg.norm(ref.coef_) < 0.02
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=0.02)


def test_train_probe_with_torch_solver_saves_plain_sklearn(fmnist_small, tmp_path):
    opts = {"n_boot": 50, "few_shot": False, "grid": [0.01, 0.1]}
    ref = train_probe(fmnist_small, "logreg", tmp_path / "a",
                      options={**opts, "solver": "sklearn"})
    ours = train_probe(fmnist_small, "logreg", tmp_path / "b",
                       options={**opts, "search": "grid"})   # torch is logreg's default
    assert ours["options"]["solver"] == "torch" and ref["options"]["solver"] == "sklearn"
    assert ours["selection"]["params"] == ref["selection"]["params"]
    assert abs(ours["test"]["accuracy"] - ref["test"]["accuracy"]) <= 0.01
    path = tmp_path / "b" / "probes" / "pixels14" / "logreg.joblib"
    assert b"linprobe" not in path.read_bytes() and b"torch" not in path.read_bytes()
    assert type(joblib.load(path).named_steps["probe"]) is LogisticRegression
