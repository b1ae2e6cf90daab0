"""End-to-end tests of train_probe: artifacts, schema, protocol, known answers, errors."""

from __future__ import annotations

import csv
import json

import joblib
import numpy as np
import pytest

from linprobe.models import train as train_mod
from linprobe.models.train import train_probe

from .conftest import FMNIST_CLASSES, blobs, split_names, write_h5

FAST = {"n_boot": 100, "few_shot": False}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_logreg_on_real_fashion_mnist_writes_three_artifacts(fmnist_small, tmp_path):
    m = train_probe(fmnist_small, "logreg", tmp_path, options={"n_boot": 200,
                                                               "few_shot": {"k": [1, 4], "seeds": 2}})
    model_path = tmp_path / "probes" / "pixels14" / "logreg.joblib"
    metrics_path = tmp_path / "metrics" / "pixels14" / "logreg.json"
    pred_path = tmp_path / "predictions" / "pixels14" / "logreg.csv"
    assert json.loads(metrics_path.read_text()) == m
    # Schema the report codes against.
    assert m["backbone"] == "pixels14" and m["backbone_spec"] == "raw:pixels14"
    assert m["probe"] == "logreg" and m["task"] == "multiclass" and m["headline"] == "accuracy"
    assert m["class_names"] == FMNIST_CLASSES
    assert m["n"] == {"train": 600, "val": 200, "test": 300} and m["embed_dim"] == 196
    assert set(m["test"]) == {"accuracy", "balanced_accuracy", "macro_f1", "top5_accuracy"}
    for k, (lo, hi) in m["test_ci"].items():
        assert lo <= m["test"][k] <= hi
    sel = m["selection"]
    assert sel["scheme"] == "val" and sel["metric"] == "accuracy"
    # The default search (torch solver: path) walks the grid upwards and may stop early.
    assert sel["search"] == "path" and sel["params"]["C"] in sel["grid"]["C"]
    assert [p["C"] for p in sel["curve"]] == sel["grid"]["C"][:len(sel["curve"])]
    best = max(p["score"] for p in sel["curve"])
    assert m["val"]["accuracy"] == pytest.approx(best)
    assert set(m["per_class"]["Trouser"]) == {"precision", "recall", "f1", "support"}
    assert np.sum(m["confusion_matrix"]) == 300 and m["options"]["normalize"] == "standard"
    assert m["few_shot"]["k"] == [1, 4] and m["few_shot"]["mean"][0] < m["few_shot"]["mean"][1]
    # Raw 14x14 pixels with 800 labelled images: well above chance, below the 60k figure.
    assert 0.65 < m["test"]["accuracy"] < 0.9
    # The saved Pipeline predicts on raw embeddings and reproduces the CSV.
    # Only sklearn classes inside: the model loads wherever sklearn does, linprobe or not.
    assert b"linprobe" not in model_path.read_bytes()
    model = joblib.load(model_path)
    rows = read_csv(pred_path)
    from linprobe.features.store import read_embeddings
    X, y, ids = read_embeddings(fmnist_small).subset("test")
    X_before = X.copy()
    pred = model.predict(X)
    assert np.array_equal(X, X_before), "predict must not scale the caller's array in place"
    assert [r["id"] for r in rows] == list(ids)
    assert [r["predicted"] for r in rows] == [FMNIST_CLASSES[i] for i in pred]
    assert [r["actual"] for r in rows] == [FMNIST_CLASSES[i] for i in y]
    assert np.mean(pred == y) == pytest.approx(m["test"]["accuracy"])
    scores = np.load(tmp_path / "predictions" / "pixels14" / "logreg.scores.npy")
    assert scores.shape == (300, 10) and scores.dtype == np.float32
    assert float(rows[0]["score"]) == pytest.approx(scores[0, pred[0]], rel=1e-5)
    # float32 end to end: lbfgs fitted in float32.
    assert model.named_steps["probe"].coef_.dtype == np.float32
    assert model.named_steps["probe"].warm_start is False


@pytest.mark.parametrize("probe", ["logreg", "linear_svm", "knn", "ovr_logreg", "ovr_linear_svm"])
def test_separable_data_reaches_accuracy_one(probe, tmp_path):
    X, y = blobs(20, 4, 8, sep=20.0)
    path = write_h5(tmp_path / "sep.h5", X, y, split_names(y), list("abcd"))
    m = train_probe(path, probe, tmp_path / "out", options=FAST)
    assert m["test"]["accuracy"] == 1.0 and m["test"]["macro_f1"] == 1.0
    model = joblib.load(tmp_path / "out" / "probes" / "sep" / f"{probe}.joblib")
    assert (model.predict(X) == y).all()


def test_test_set_never_influences_selection(tmp_path):
    X, y = blobs(30, 3, 6, sep=1.0)
    split = split_names(y)
    te = split == "test"
    rng = np.random.default_rng(5)
    X2, y2 = X.copy(), y.copy()
    X2[te] = rng.normal(size=X2[te].shape) * 10     # scramble test completely
    y2[te] = rng.permutation(y2[te])
    a = train_probe(write_h5(tmp_path / "a.h5", X, y, split, list("abc")), "logreg",
                    tmp_path / "o", options=FAST)
    b = train_probe(write_h5(tmp_path / "b.h5", X2, y2, split, list("abc")), "logreg",
                    tmp_path / "o", options=FAST)
    assert a["selection"]["curve"] == b["selection"]["curve"]
    assert a["selection"]["params"] == b["selection"]["params"] and a["val"] == b["val"]
    assert a["test"] != b["test"]


def test_no_val_split_holds_out_stratified_fraction_of_train(tmp_path):
    X, y = blobs(25, 3, 6, sep=2.0)
    split = np.where(split_names(y) == "val", "train", split_names(y))
    m = train_probe(write_h5(tmp_path / "nv.h5", X, y, split, list("abc")), "logreg",
                    tmp_path / "o", options={**FAST, "holdout_fraction": 0.25})
    assert m["selection"]["scheme"] == "val_from_train" and m["n"]["val"] == 0
    assert m["val"]["accuracy"] > 0.8


def test_kfold_scheme_and_refine_search(tmp_path):
    X, y = blobs(12, 3, 6, sep=1.5)
    path = write_h5(tmp_path / "k.h5", X, y, split_names(y), list("abc"))
    m = train_probe(path, "logreg", tmp_path / "o",
                    options={**FAST, "scheme": "kfold", "folds": 3, "grid": [0.01, 1, 100],
                             "search": "refine", "refine_steps": 2})
    sel = m["selection"]
    assert sel["scheme"] == "kfold"
    assert len(sel["curve"]) > 3                          # refinement added midpoints
    assert sel["n_fits"] == 3 * len(sel["curve"])        # every value on every fold
    cs = [p["C"] for p in sel["curve"]]
    assert cs == sorted(cs) and {0.01, 1.0, 100.0} <= set(cs)


def test_class_weight_and_normalize_are_recorded_in_the_model(tmp_path):
    rng = np.random.default_rng(0)
    X, y = blobs(60, 2, 4, sep=0.6)
    keep = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:12]])  # 5:1
    X, y = X[keep], y[keep]
    path = write_h5(tmp_path / "imb.h5", X, y, split_names(y, seed=1), ["major", "minor"])
    plain = train_probe(path, "logreg", tmp_path / "a", options={**FAST, "normalize": "l2"})
    bal = train_probe(path, "logreg", tmp_path / "b",
                      options={**FAST, "class_weight": {"major": 1.0, "minor": 5.0},
                               "normalize": "l2"})
    model = joblib.load(tmp_path / "b" / "probes" / "imb" / "logreg.joblib")
    assert model.named_steps["probe"].class_weight == {0: 1.0, 1: 5.0}
    assert type(model.named_steps["normalize"]).__name__ == "Normalizer"
    assert bal["options"]["class_weight"] == {"major": 1.0, "minor": 5.0}
    # Up-weighting the minority class raises its recall.
    assert bal["per_class"]["minor"]["recall"] >= plain["per_class"]["minor"]["recall"]
    assert "balanced_accuracy" in bal["test"]
    del rng


def test_class_missing_from_train_is_reported_not_crashed(tmp_path):
    X, y = blobs(20, 4, 6, sep=5.0)
    split = split_names(y)
    split[(y == 3) & (split != "test")] = "test"        # class d never trained on
    m = train_probe(write_h5(tmp_path / "m.h5", X, y, split, list("abcd")), "logreg",
                    tmp_path / "o", options=FAST)
    assert m["missing_classes"]["train"] == ["d"]
    assert m["per_class"]["d"]["recall"] == 0.0 and m["per_class"]["a"]["recall"] == 1.0
    scores = np.load(tmp_path / "o" / "predictions" / "m" / "logreg.scores.npy")
    assert scores.shape[1] == 4 and (scores[:, 3] == 0).all()


def test_multilabel_known_structure(tmp_path):
    """Features are the labels plus small noise: every class is perfectly ranked (AP = 1)."""
    rng = np.random.default_rng(0)
    Y = (rng.random((240, 5)) < 0.35).astype(np.uint8)
    Y[:, 4] = 0
    Y[:120, 4] = rng.random(120) < 0.5                   # class e has no positive in val/test
    X = (Y * 3.0 + rng.normal(scale=0.3, size=Y.shape)).astype(np.float32)
    split = np.array(["train"] * 120 + ["val"] * 60 + ["test"] * 60, dtype=object)
    m = train_probe(write_h5(tmp_path / "ml.h5", X, Y, split, list("abcde")), "ovr_logreg",
                    tmp_path / "o", options={**FAST, "few_shot": {"k": [2], "seeds": 2}})
    assert m["task"] == "multilabel" and m["headline"] == "mAP"
    assert m["test"]["mAP"] == 1.0 and m["test"]["micro_ap"] == 1.0
    assert m["test"]["subset_accuracy"] == 1.0 and m["test"]["hamming_loss"] == 0.0
    assert m["per_class"]["e"]["ap"] is None and m["missing_classes"]["test"] == ["e"]
    assert set(m["per_class"]["a"]) == {"ap", "precision", "recall", "f1", "support", "threshold"}
    assert set(m["pr_curves"]) == set("abcd") and len(m["pr_curves"]["a"]["recall"]) <= 50
    rows = read_csv(tmp_path / "o" / "predictions" / "ml" / "ovr_logreg.csv")
    names = np.array(list("abcde"))
    for r, yt in zip(rows, Y[180:]):
        assert r["actual"] == "|".join(names[yt.astype(bool)]) == r["predicted"]


def test_few_shot_in_train_probe_sees_only_train_rows(fmnist_small, tmp_path, monkeypatch):
    seen = {}
    real = train_mod.few_shot_curve

    def spy(build, X_train, y_train, *args, **kwargs):
        rows = kwargs.get("train_rows")          # X_train may be every split, read by row
        seen["X"] = (X_train if rows is None else X_train[rows]).copy()
        seen["y"] = y_train.copy()
        return real(build, X_train, y_train, *args, **kwargs)

    monkeypatch.setattr(train_mod, "few_shot_curve", spy)
    train_probe(fmnist_small, "knn", tmp_path, options={"n_boot": 50,
                                                         "few_shot": {"k": [1], "seeds": 1}})
    from linprobe.features.store import read_embeddings
    X_tr, y_tr, _ = read_embeddings(fmnist_small).subset("train")
    assert np.array_equal(seen["X"], X_tr) and np.array_equal(seen["y"], y_tr)


@pytest.mark.parametrize("probe, options, match", [
    ("resnet", None, "unknown probe 'resnet'"),
    ("logreg", {"Cs": [1]}, r"unknown probe option\(s\) \['Cs'\]"),
    ("logreg", {"grid": [0.1, -1]}, "The 'grid' probe option must be a non-empty list of positive C"),
    ("logreg", {"normalize": "zscore"}, "The 'normalize' probe option must be one of"),
    ("knn", {"grid": [2.5]}, "positive n_neighbors"),
    ("logreg", {"class_weight": {"zebra": 2}}, "'class_weight' probe option must be a dict keyed"),
    ("logreg", {"scheme": "test"}, r"The 'scheme' probe option must be one of \['val', 'kfold'\]"),
])
def test_bad_options_name_the_problem(probe, options, match, tmp_path):
    X, y = blobs(10, 3, 4, sep=3.0)
    path = write_h5(tmp_path / "e.h5", X, y, split_names(y), list("abc"))
    with pytest.raises(ValueError, match=match):
        train_probe(path, probe, tmp_path / "o", options=options)
    assert not (tmp_path / "o").exists()


def test_bad_files_name_the_problem(tmp_path):
    X, y = blobs(10, 3, 4, sep=3.0)
    no_test = write_h5(tmp_path / "nt.h5", X, y, ["train"] * 20 + ["val"] * 10, list("abc"))
    with pytest.raises(ValueError, match="has no 'test' samples"):
        train_probe(no_test, "logreg", tmp_path / "o")
    Y = (np.random.default_rng(0).random((30, 3)) < 0.5).astype(np.uint8)
    ml = write_h5(tmp_path / "ml.h5", X, Y, split_names(y), list("abc"))
    with pytest.raises(ValueError, match="probe 'logreg' does not support multilabel data; use one of"):
        train_probe(ml, "logreg", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="run `linprobe extract"):
        train_probe(tmp_path / "absent.h5", "logreg", tmp_path / "o")
    with pytest.raises(ValueError, match="'seed' parameter of train_probe"):
        train_probe(no_test, "logreg", tmp_path / "o", seed=-1)


def test_failed_rerun_keeps_previous_artifacts(tmp_path, monkeypatch):
    X, y = blobs(15, 3, 4, sep=4.0)
    path = write_h5(tmp_path / "r.h5", X, y, split_names(y), list("abc"))
    train_probe(path, "logreg", tmp_path / "o", options=FAST)
    model_file = tmp_path / "o" / "probes" / "r" / "logreg.joblib"
    before = model_file.read_bytes()

    def crash(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr("linprobe.models.persist.joblib.dump", crash)
    with pytest.raises(OSError, match="disk full"):
        train_probe(path, "logreg", tmp_path / "o", options=FAST)
    assert model_file.read_bytes() == before
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["logreg.joblib"]
