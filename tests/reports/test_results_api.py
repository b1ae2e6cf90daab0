"""The schema and the notebook helpers on real train outputs (the report fixtures' artifacts):
train writes exactly the schema, and load_results / load_embeddings return what it wrote."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import linprobe
from linprobe.features.store import read_embeddings
from linprobe.schema import (PREDICTION_HEADER, SCHEMA_VERSION, ArtifactPaths, RunMetrics,
                             read_metrics, read_predictions)
from tests.reports.conftest import CLASSES
from tests.reports.realruns import DEMO_CLASSES

RUNS = [("mnv3", "logreg"), ("mnv3", "knn"), ("lite0", "logreg"), ("lite0", "knn")]


@pytest.fixture(params=["multiclass", "multilabel"])
def artifacts(request):
    return request.getfixturevalue(f"{request.param}_artifacts")


def test_train_writes_the_schema_the_reader_returns_unchanged(artifacts):
    layout = ArtifactPaths(artifacts)
    files = layout.metrics_files()
    assert files
    for path in files:
        backbone, probe = layout.run_of(path)
        written = json.loads(path.read_text())
        assert written["schema_version"] == SCHEMA_VERSION
        assert set(written) <= set(RunMetrics.__annotations__), "an undeclared metrics key"
        assert read_metrics(path) == written  # every key has its declared type
        for kind, file in layout.run(backbone, probe).items():
            assert file.is_file(), kind
        preds = read_predictions(layout.predictions(backbone, probe))
        assert layout.predictions(backbone, probe).read_text().splitlines()[0] == \
            ",".join(PREDICTION_HEADER)
        scores = np.load(layout.scores(backbone, probe))
        assert scores.shape == (written["n"]["test"], len(written["class_names"]))
        assert len(preds.ids) == written["n"]["test"]


def test_load_results_has_one_row_per_run(multiclass_artifacts):
    df = linprobe.load_results(multiclass_artifacts)
    assert sorted(zip(df.backbone, df.probe)) == sorted(RUNS)
    for row in df.itertuples():
        m = read_metrics(ArtifactPaths(multiclass_artifacts).metrics(row.backbone, row.probe))
        assert row.headline == "accuracy" and row.task == "multiclass"
        assert row.test == m["test"]["accuracy"] == row.test_accuracy
        assert [row.ci_low, row.ci_high] == m["test_ci"]["accuracy"]
        assert row.ci_low <= row.test <= row.ci_high
        assert row.val == m["val"]["accuracy"]
        assert row.params == m["selection"]["params"] and row.probe_type == row.probe
        assert row.solver == m["solver"]
        assert row.fit_seconds == m["fit_seconds"] and row.n_test == m["n"]["test"]
    table = df.pivot(index="backbone", columns="probe", values="test")
    assert table.shape == (2, 2)


def test_load_results_multilabel_and_missing_values(multilabel_artifacts, tmp_path):
    df = linprobe.load_results(multilabel_artifacts)
    assert list(df.headline) == ["mAP"] and df.test[0] == df.test_mAP[0]
    # An old or hand-trimmed file: missing optional keys are NaN, not an error.
    path = tmp_path / "metrics" / "b" / "p.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"task": "multiclass", "class_names": ["x", "y"],
                                "test": {"accuracy": 0.5}}))
    row = linprobe.load_results(tmp_path).iloc[0]
    assert (row.backbone, row.probe, row.test) == ("b", "p", 0.5)
    assert math.isnan(row.ci_low) and math.isnan(row.val) and row.params == {}


def test_load_results_without_runs_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"no metrics files under {tmp_path}.*dvc repro"):
        linprobe.load_results(tmp_path)


def test_load_embeddings_as_numpy(multiclass_artifacts):
    path = ArtifactPaths(multiclass_artifacts).embeddings("mnv3")
    e = linprobe.load_embeddings(path)
    es = read_embeddings(path)
    assert e.embeddings.dtype == np.float32 and e.embeddings.shape == es.embeddings.shape
    assert np.array_equal(e.embeddings, es.embeddings) and np.array_equal(e.labels, es.labels)
    assert list(e.ids) == list(es.ids)
    # 20/8/10 images per class of 5 classes; split names, not codes.
    assert {s: int((e.split == s).sum()) for s in ("train", "val", "test")} == \
        {"train": 100, "val": 40, "test": 50}
    # Each image's label names the class of the demo folder it came from.
    folder = [i.split("-")[1] for i in e.ids]  # img/<split>-<folder>-<file>.png
    assert [e.class_names[k] for k in e.labels] == [CLASSES[DEMO_CLASSES.index(f)] for f in folder]
    assert e.task == "multiclass"
    assert e.attrs["backbone"] == "torchvision:mobilenet_v3_small:none"
