"""The torch L-BFGS linear SVM against sklearn's LinearSVC (liblinear, the reference), on real
Fashion-MNIST pixels."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.class_weight import compute_class_weight

from linprobe.features.store import read_embeddings
from linprobe.models.torch_svm import TorchLinearSVC, ovr_targets, primal_objective
from linprobe.models.train import train_probe


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Same reason as the BLAS limit in conftest: spinning worker threads on a shared box."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(fmnist_small):
    """Standardised float32 train (600 x 196) and test (300 x 196) pixels with labels."""
    es = read_embeddings(fmnist_small)
    X, y, _ = es.subset("train")
    X_te, y_te, _ = es.subset("test")
    sc = StandardScaler().fit(X)
    return (sc.transform(X).astype(np.float32), y, sc.transform(X_te).astype(np.float32), y_te)


def reference(C, class_weight=None, X=None, y=None):
    # dual=True: liblinear's coordinate descent, which LinearSVC runs when n < D (embeddings).
    return LinearSVC(C=C, tol=1e-8, max_iter=100_000, class_weight=class_weight).fit(X, y)


def objective(clf, X, y, class_weight, C):
    """liblinear's primal of each binary problem of a fitted LinearSVC/TorchLinearSVC."""
    classes, y_idx = np.unique(y, return_inverse=True)
    Y, S = ovr_targets(y_idx, compute_class_weight(class_weight, classes=classes, y=y))
    return primal_objective(X, Y, S, clf.coef_, clf.intercept_, C)


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("C", [1e-3, 0.03, 1.0])
def test_reaches_liblinears_primal_objective(data, C):
    X, y, _, _ = data
    ref = reference(C, X=X, y=y)
    ours = TorchLinearSVC(C=C, tol=1e-6, device="cpu").fit(X, y)
    assert ours.coef_.dtype == np.float32           # float32 data, float32 solve
    # Per binary problem, within 3e-4 relative of liblinear at tol 1e-8 (measured: up to 1.2e-4
    # at C=1, the float32 floor; float64 input reaches 1e-7).
    assert np.all(objective(ours, X, y, None, C) <= objective(ref, X, y, None, C) * (1 + 3e-4))
    assert rel(ours.coef_, ref.coef_) < 0.01         # measured 0.1-0.3%
    assert rel(ours.intercept_, ref.intercept_) < 0.01


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_default_tolerance_predicts_like_liblinear(data, C):
    X, y, X_te, y_te = data
    ref = LinearSVC(C=C).fit(X, y)                  # the probe's defaults: tol 1e-4, 1000 iter
    ours = TorchLinearSVC(C=C, device="cpu").fit(X, y)
    assert np.mean(ours.predict(X_te) == ref.predict(X_te)) >= 0.99
    assert abs(np.mean(ours.predict(X_te) == y_te) - np.mean(ref.predict(X_te) == y_te)) <= 0.005


def test_warm_started_path_equals_cold_fits(data):
    X, y, X_te, _ = data
    warm = TorchLinearSVC(tol=1e-6, warm_start=True, device="cpu")
    for C in [1e-3, 1e-2, 0.1, 1.0]:
        warm.set_params(C=C).fit(X, y)
        cold = TorchLinearSVC(C=C, tol=1e-6, device="cpu").fit(X, y)
        assert rel(warm.coef_, cold.coef_) < 0.01
        assert np.array_equal(warm.predict(X_te), cold.predict(X_te))


@pytest.mark.parametrize("binary", [False, True], ids=["10 classes", "2 classes"])
@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 1: 0.5, 2: 2.0}])
def test_class_weight_as_liblinear_applies_it(data, binary, class_weight):
    """In the one-vs-rest problem of class k only class k's samples are reweighted; with 2
    classes both classes are. Unbalanced data (class c keeps 6 * (c + 1) samples) so that
    "balanced" weights differ."""
    X, y, _, _ = data
    keep = np.concatenate([np.flatnonzero(y == c)[: 6 * (c + 1)] for c in range(10)])
    X, y = X[keep], y[keep]
    if binary:
        keep = np.isin(y, [0, 1, 2])
        X, y = X[keep], np.minimum(y[keep], 1)       # classes 0 | 1+2: 6 vs 30 samples
    C = 0.1
    ref = reference(C, class_weight, X, y)
    ours = TorchLinearSVC(C=C, tol=1e-6, class_weight=class_weight, device="cpu").fit(X, y)
    assert ours.coef_.shape == ref.coef_.shape == ((1 if binary else 10), X.shape[1])
    assert rel(ours.coef_, ref.coef_) < 0.01
    assert np.all(objective(ours, X, y, class_weight, C)
                  <= objective(ref, X, y, class_weight, C) * (1 + 1e-4))
    # The weights matter here: the unweighted solution is 3x further off than ours.
    plain = reference(C, None, X, y)
    assert rel(plain.coef_, ref.coef_) > 0.03      # measured >= 0.049


def test_to_sklearn_pickles_as_plain_linearsvc(data, tmp_path):
    X, y, X_te, _ = data
    for labels in (y, np.where(y == 3, "dress", "other")):   # 10 classes; 2 string classes
        ours = TorchLinearSVC(C=0.1, device="cpu").fit(X, labels)
        path = tmp_path / "svm.joblib"
        joblib.dump(ours.to_sklearn(), path)
        assert b"linprobe" not in path.read_bytes() and b"torch" not in path.read_bytes()
        back = joblib.load(path)
        assert type(back) is LinearSVC
        assert np.array_equal(back.predict(X_te), ours.predict(X_te))
        assert np.array_equal(back.decision_function(X_te), ours.decision_function(X_te))
        assert back.n_iter_ == ours.n_iter_ and back.n_features_in_ == X.shape[1]


def test_train_probe_with_torch_solver_selects_like_liblinear(fmnist_small, tmp_path):
    opts = {"n_boot": 50, "few_shot": False}
    ref = train_probe(fmnist_small, "linear_svm", tmp_path / "a",
                      options={**opts, "solver": "sklearn"})
    ours = train_probe(fmnist_small, "linear_svm", tmp_path / "b",
                       options={**opts, "device": "cpu"})   # torch is linear_svm's default
    assert ours["options"]["solver"] == "torch" and ref["options"]["solver"] == "sklearn"
    assert (ours["solver"], ref["solver"]) == ("torch L-BFGS", "sklearn liblinear")
    # Same C, or a C whose val score ties the reference's best (ties are common on 200 val rows).
    c_ref, c_ours = ref["selection"]["params"]["C"], ours["selection"]["params"]["C"]
    curve = {p["C"]: p["score"] for p in ref["selection"]["curve"]}
    assert c_ours == c_ref or curve[c_ours] == curve[c_ref]
    # The val curves agree to one val row where both solvers converge (C <= 1); at C >= 10 this
    # near-separable problem is not solved to the optimum in max_iter by either (liblinear hits
    # its cap too), and the curves differ by up to 4 of 200 val rows (measured 0.02).
    gap = {p["C"]: abs(p["score"] - curve[p["C"]]) for p in ours["selection"]["curve"]}
    assert max(g for c, g in gap.items() if c <= 1) <= 0.0051
    assert max(gap.values()) <= 0.025
    assert abs(ours["test"]["accuracy"] - ref["test"]["accuracy"]) <= 0.005
    path = tmp_path / "b" / "probes" / "pixels14" / "linear_svm.joblib"
    assert b"linprobe" not in path.read_bytes() and b"torch" not in path.read_bytes()
    assert type(joblib.load(path).named_steps["probe"]) is LinearSVC
