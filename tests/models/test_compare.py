"""The one comparison (models.compare): a paired bootstrap of the displayed headline metric,
on real `train` runs (multi-label: mosaic embeddings; multi-class: Fashion-MNIST pixels)."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from linprobe.models import compare_runs, train_probe
from linprobe.models.compare import NotPairedError, paired_compare, read_run_outputs
from linprobe.models.metrics import mean_ap, mean_ap_weighted
from linprobe.models.uncertainty import resample_counts
from tests.models.mosaic import mosaic_runs


@pytest.fixture(scope="module")
def ml_art(tmp_path_factory):
    return mosaic_runs(tmp_path_factory.mktemp("mosaic"))


def headline(art, run):
    m = json.loads((art / "metrics" / f"{run}.json").read_text())
    return m["test"][m["headline"]]


def test_weighted_map_is_mean_ap_on_each_resample(ml_art):
    out = read_run_outputs(ml_art, "r18", "ovr_logreg")
    Y, n = out.labels, len(out.ids)
    # The real scores, and the same rounded to one decimal (many tied scores per class).
    for S in (out.scores, np.round(out.scores, 1)):
        f = mean_ap_weighted(Y, S)
        assert f(np.ones((1, n), np.int64))[0] == pytest.approx(mean_ap(Y, S), abs=1e-12)
        W = next(resample_counts(n, 20, seed=3))
        got = f(W)
        for r in range(len(W)):
            rows = np.repeat(np.arange(n), W[r])      # the resample itself, duplicates included
            assert got[r] == pytest.approx(mean_ap(Y[rows], S[rows]), abs=1e-12)
    # A weighting with no positive at all: mAP undefined.
    assert np.isnan(f(np.where(Y.any(axis=1), 0, 1)[None]))[0]


def test_multilabel_point_estimate_is_the_metrics_map(ml_art):
    res = compare_runs(ml_art, "r18/ovr_linear_svm", "r18/ovr_logreg", n_boot=500, seed=1)
    assert res["metric"] == "mAP" and res["n"] == 200 and res["n_boot"] == 500
    assert res["value_a"] == pytest.approx(headline(ml_art, "r18/ovr_linear_svm"), abs=1e-12)
    assert res["value_b"] == pytest.approx(headline(ml_art, "r18/ovr_logreg"), abs=1e-12)
    assert res["diff"] == pytest.approx(res["value_a"] - res["value_b"], abs=1e-12)
    assert res["ci"][0] <= res["diff"] <= res["ci"][1]
    assert res == compare_runs(ml_art, "r18/ovr_linear_svm", "r18/ovr_logreg", n_boot=500, seed=1)
    swapped = compare_runs(ml_art, "r18/ovr_logreg", "r18/ovr_linear_svm", n_boot=500, seed=1)
    assert swapped["diff"] == pytest.approx(-res["diff"], abs=1e-12)
    same = compare_runs(ml_art, "r18/ovr_logreg", "r18/ovr_logreg")
    assert same["diff"] == 0 and same["p_value"] == 1.0 and not same["significant"]


def test_multiclass_point_estimate_is_the_accuracy(fmnist_small, tmp_path):
    opts = {"n_boot": 50, "few_shot": False}
    lr = train_probe(fmnist_small, "logreg", tmp_path, options={**opts, "grid": [0.1, 1.0]})
    kn = train_probe(fmnist_small, "knn", tmp_path, options={**opts, "grid": [1]})
    res = compare_runs(tmp_path, "pixels14/logreg", "pixels14/knn", n_boot=500)
    assert res["metric"] == "accuracy" and res["n"] == 300
    assert res["value_a"] == pytest.approx(lr["test"]["accuracy"], abs=1e-12)
    assert res["value_b"] == pytest.approx(kn["test"]["accuracy"], abs=1e-12)
    assert res["diff"] == pytest.approx(res["value_a"] - res["value_b"], abs=1e-12)
    assert res["ci"][0] <= res["diff"] <= res["ci"][1]


def test_runs_on_other_test_images_are_refused(fmnist_small, tmp_path):
    train_probe(fmnist_small, "knn", tmp_path, options={"grid": [1], "few_shot": False})
    other = tmp_path / "renamed.h5"
    shutil.copy(fmnist_small, other)
    with h5py.File(other, "a") as f:         # the same images under other names
        ids = [f"x/{i}" for i in range(len(f["ids"]))]
        del f["ids"]
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
    train_probe(other, "knn", tmp_path, options={"grid": [1], "few_shot": False})
    with pytest.raises(NotPairedError, match=r"pixels14/knn .* and .*renamed/knn .* not on the "
                                             r"same test set .*ids only in A e\.g\. \['test/"):
        compare_runs(tmp_path, "pixels14/knn", "renamed/knn")
    assert issubclass(NotPairedError, ValueError)  # the CLI's `linprobe: error:` path
    with pytest.raises(ValueError, match=r"The 'run_b' parameter of compare_runs must be "
                                         r"'<backbone>/<probe>'\. Got 'knn' instead\."):
        compare_runs(tmp_path, "pixels14/knn", "knn")
    with pytest.raises(FileNotFoundError, match=r"pixels14/ridge\.json does not exist"):
        compare_runs(tmp_path, "pixels14/knn", "pixels14/ridge")


def test_a_multilabel_run_without_scores_names_the_file(ml_art, tmp_path):
    art = tmp_path / "artifacts"
    shutil.copytree(ml_art, art)
    (art / "predictions" / "r18" / "ovr_logreg.scores.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"ovr_logreg\.scores\.npy does not exist .*mAP"):
        compare_runs(art, "r18/ovr_logreg", "r18/ovr_linear_svm")
    np.save(art / "predictions" / "r18" / "ovr_logreg.scores.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"ovr_logreg: the test scores must be a finite "
                                         r"\(200, 10\) array .* got \(3, 2\)"):
        paired_compare(read_run_outputs(art, "r18", "ovr_logreg"),
                       read_run_outputs(art, "r18", "ovr_linear_svm"))
