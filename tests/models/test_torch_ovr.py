"""The batched torch L-BFGS one-vs-rest solvers against sklearn's OneVsRestClassifier of
LogisticRegression / LinearSVC (the reference), on real multilabel embeddings (the mosaic) and
real multiclass pixels."""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from linprobe.features.store import read_embeddings
from linprobe.models.torch_ovr import (TorchOvrLinearSVC, TorchOvrLogisticRegression,
                                       binary_problems)
from linprobe.models.torch_svm import primal_objective
from linprobe.models.train import train_probe
from tests.models.mosaic import mosaic_embeddings

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TORCH = {"logreg": TorchOvrLogisticRegression, "svm": TorchOvrLinearSVC}


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """The embeddings file of the mosaic slice (multilabel, 10 classes, ResNet-18 at 32 px)."""
    return mosaic_embeddings(tmp_path_factory.mktemp("ovr-mosaic"))


def _standard(path):
    es = read_embeddings(path)
    X, y, _ = es.subset("train")
    X_te, y_te, _ = es.subset("test")
    sc = StandardScaler().fit(X)
    return sc.transform(X).astype(np.float32), y, sc.transform(X_te).astype(np.float32), y_te


@pytest.fixture(scope="module")
def data(mosaic, fmnist_small):
    """{"multilabel": (X, Y (n, 10) 0/1, X_te, Y_te), "multiclass": (X, y, X_te, y_te)}."""
    return {"multilabel": _standard(mosaic), "multiclass": _standard(fmnist_small)}


def reference(kind, C, class_weight=None, tol=1e-8):
    est = (LogisticRegression(C=C, tol=tol, max_iter=100_000, class_weight=class_weight)
           if kind == "logreg" else
           LinearSVC(C=C, tol=tol, max_iter=100_000, class_weight=class_weight))
    return OneVsRestClassifier(est)


def fit_quiet(est, X, y):
    with warnings.catch_warnings():   # "Label not 3 is present in all training examples"
        warnings.simplefilter("ignore", UserWarning)
        return est.fit(X, y)


def coefs(ovr: OneVsRestClassifier) -> tuple[np.ndarray, np.ndarray]:
    """(K, D), (K,) of a fitted OneVsRestClassifier (zeros for constant predictors)."""
    W = np.stack([getattr(e, "coef_", np.zeros((1, ovr.n_features_in_)))[0]
                  for e in ovr.estimators_])
    return W, np.array([getattr(e, "intercept_", [0.0])[0] for e in ovr.estimators_])


def objectives(kind, X, y, W, b, C, class_weight=None) -> np.ndarray:
    """sklearn's objective of each binary problem (K,), in float64."""
    _, Y, S = binary_problems(y, class_weight)
    if kind == "svm":
        return primal_objective(X, 2.0 * Y - 1, S, W, b, C)
    Z = np.asarray(X, np.float64) @ np.asarray(W, np.float64).T + b
    bce = np.logaddexp(0, Z) - Y * Z
    return ((S * bce).sum(axis=0) + (W.astype(np.float64) ** 2).sum(axis=1) / (2 * C)) \
        / S.sum(axis=0)


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
@pytest.mark.parametrize("kind", ["logreg", "svm"])
@pytest.mark.parametrize("C", [0.01, 0.3])
def test_reaches_sklearns_objective_per_problem(data, task, kind, C):
    X, y, _, _ = data[task]
    ref = fit_quiet(reference(kind, C), X, y)
    ours = TORCH[kind](C=C, tol=1e-6, device="cpu").fit(X, y)
    assert ours.coef_.dtype == np.float32 and ours.coef_.shape == coefs(ref)[0].shape
    mine, theirs = (objectives(kind, X, y, *w, C) for w in ((ours.coef_, ours.intercept_),
                                                            coefs(ref)))
    assert np.all(mine <= theirs * (1 + 3e-4))       # float32 floor, as test_torch_svm
    assert rel(ours.coef_, coefs(ref)[0]) < 0.02


@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_default_tolerance_predicts_like_sklearn(data, task, kind):
    X, y, X_te, y_te = data[task]
    ref = fit_quiet(reference(kind, 0.1, tol=1e-4), X, y)   # the probe's defaults
    ours = TORCH[kind](C=0.1, device="cpu").fit(X, y)
    agree = ours.predict(X_te) == ref.predict(X_te)
    assert np.mean(agree) >= 0.99


@pytest.mark.parametrize("kind", ["logreg", "svm"])
@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 1: 0.5, 2: 2.0}])
def test_class_weight_as_onevsrest_applies_it(data, kind, class_weight):
    """Each binary estimator applies class_weight to its own 0/1 labels: "balanced" balances a
    class against the rest; a dict keyed by class index weighs the negatives by its key 0 and
    the positives by its key 1 in every problem (sklearn's behaviour, matched, not endorsed)."""
    X, y, _, _ = data["multiclass"]
    C = 0.1
    ref = fit_quiet(reference(kind, C, class_weight), X, y)
    ours = TORCH[kind](C=C, tol=1e-6, class_weight=class_weight, device="cpu").fit(X, y)
    assert rel(ours.coef_, coefs(ref)[0]) < 0.02
    mine = objectives(kind, X, y, ours.coef_, ours.intercept_, C, class_weight)
    assert np.all(mine <= objectives(kind, X, y, *coefs(ref), C, class_weight) * (1 + 3e-4))
    plain = fit_quiet(reference(kind, C), X, y)   # the weights matter here
    assert rel(coefs(plain)[0], coefs(ref)[0]) > 0.05


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_constant_columns_get_sklearns_constant_predictor(data, kind):
    X, Y, X_te, _ = data["multilabel"]
    Y = Y.copy()
    Y[:, 2], Y[:, 5] = 0, 1                         # no positive; only positives
    ref = fit_quiet(reference(kind, 0.1, tol=1e-4), X, Y)
    ours = TORCH[kind](C=0.1, device="cpu").fit(X, Y).to_sklearn()
    for k in (2, 5):
        assert type(ours.estimators_[k]) is type(ref.estimators_[k]) is _ConstantPredictor
        assert np.array_equal(ours.decision_function(X_te)[:, k],
                              ref.decision_function(X_te)[:, k])
    assert np.mean(ours.predict(X_te) == ref.predict(X_te)) >= 0.99


@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_to_sklearn_pickles_as_plain_onevsrest(data, task, kind, tmp_path):
    X, y, X_te, _ = data[task]
    labels = [y] if task == "multilabel" else [y, np.where(y == 3, "dress", "other")]
    for lab in labels:                     # 10 classes; 2 string classes (a single problem)
        ours = TORCH[kind](C=0.1, device="cpu").fit(X, lab)
        joblib.dump(ours.to_sklearn(), tmp_path / "ovr.joblib")
        raw = (tmp_path / "ovr.joblib").read_bytes()
        assert b"linprobe" not in raw and b"torch" not in raw
        back = joblib.load(tmp_path / "ovr.joblib")
        assert type(back) is OneVsRestClassifier
        assert type(back.estimators_[0]) is (LogisticRegression if kind == "logreg" else LinearSVC)
        assert len(back.estimators_) == (1 if lab.ndim == 1 and len(set(lab)) == 2 else 10)
        assert np.array_equal(back.predict(X_te), ours.predict(X_te))
        assert np.array_equal(back.decision_function(X_te), ours.decision_function(X_te))
        if kind == "logreg":
            assert np.array_equal(back.predict_proba(X_te), ours.predict_proba(X_te))
        else:
            assert not hasattr(ours, "predict_proba") and not hasattr(back, "predict_proba")


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_warm_started_path_equals_cold_fits(data, kind):
    X, Y, X_te, _ = data["multilabel"]
    warm = TORCH[kind](tol=1e-6, warm_start=True, device="cpu")
    for C in [1e-3, 1e-2, 0.1, 1.0]:
        warm.set_params(C=C).fit(X, Y)
        cold = TORCH[kind](C=C, tol=1e-6, device="cpu").fit(X, Y)
        assert rel(warm.coef_, cold.coef_) < 0.02
        assert np.mean(warm.predict(X_te) == cold.predict(X_te)) >= 0.99


@pytest.mark.parametrize("probe", ["ovr_logreg", "ovr_linear_svm"])
def test_train_probe_on_multilabel_selects_like_sklearn(mosaic, tmp_path, probe):
    opts = {"n_boot": 50, "few_shot": False, "grid": [0.001, 0.01, 0.1, 1.0]}
    ref = train_probe(mosaic, probe, tmp_path / "a", options={**opts, "solver": "sklearn"})
    ours = train_probe(mosaic, probe, tmp_path / "b", options={**opts, "device": "cpu"})
    assert (ours["options"]["solver"], ours["selection"]["search"]) == ("torch", "path")
    assert ours["solver"] == "torch L-BFGS" and ref["solver"].startswith("sklearn")
    # Same C, or one whose reference val mAP is within 0.01 of the reference's best.
    c_ref, c_ours = ref["selection"]["params"]["C"], ours["selection"]["params"]["C"]
    curve = {p["C"]: p["score"] for p in ref["selection"]["curve"]}
    assert c_ours == c_ref or curve[c_ref] - curve[c_ours] <= 0.01
    assert abs(ours["test"]["mAP"] - ref["test"]["mAP"]) <= 0.01
    path = tmp_path / "b" / "probes" / "r18" / f"{probe}.joblib"
    assert type(joblib.load(path).named_steps["probe"]) is OneVsRestClassifier


@pytest.mark.parametrize("probe", ["ovr_logreg", "ovr_linear_svm"])
def test_train_probe_grid_on_multiclass_chooses_sklearns_c(fmnist_small, tmp_path, probe):
    """At the full tol the torch grid retraces sklearn's val curve (to one val row where both
    converge) and chooses its C."""
    opts = {"n_boot": 50, "few_shot": False}
    ref = train_probe(fmnist_small, probe, tmp_path / "a", options={**opts, "solver": "sklearn"})
    ours = train_probe(fmnist_small, probe, tmp_path / "b",
                       options={**opts, "search": "grid", "device": "cpu"})
    assert ours["selection"]["params"] == ref["selection"]["params"]
    curve = {p["C"]: p["score"] for p in ref["selection"]["curve"]}
    gap = {p["C"]: abs(p["score"] - curve[p["C"]]) for p in ours["selection"]["curve"]}
    assert max(g for c, g in gap.items() if c <= 1) <= 1 / ref["n"]["val"] + 1e-9
    assert abs(ours["test"]["accuracy"] - ref["test"]["accuracy"]) <= 0.01
