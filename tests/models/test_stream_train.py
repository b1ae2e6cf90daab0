"""`logreg` with the `chunk_mb` option: the train protocol streamed (models/stream_train.py),
reached through train_probe and `linprobe train --params`."""

from __future__ import annotations

import csv
import os
import json
import subprocess
import sys

import joblib
import numpy as np
import pytest
import yaml

from linprobe.features.store import read_embeddings
from linprobe.models.train import train_probe
from linprobe.schema import ArtifactPaths

from .conftest import blobs, write_h5

OPTS = {"solver": "torch", "n_boot": 20, "few_shot": False, "grid": [0.01, 0.1, 1.0],
        "search": "refine", "refine_steps": 1, "tol": 1e-6, "device": "cpu", "threads": 1}


def predictions(out, name, backbone="pixels14"):
    with open(ArtifactPaths(out).run(backbone, name)["predictions"]) as f:
        return [row["predicted"] for row in csv.DictReader(f)]


def test_streamed_train_matches_the_in_memory_run(fmnist_small, tmp_path, one_torch_thread):
    mem = train_probe(fmnist_small, "logreg", tmp_path, options=OPTS, name="mem")
    # 0.05 MiB of 196-d float32 rows: 66-row blocks, the file's 1100 rows in 17 reads a pass.
    got = train_probe(fmnist_small, "logreg", tmp_path, options={**OPTS, "chunk_mb": 0.05},
                      name="streamed")
    assert list(got) == list(mem)                       # the same metrics fields, same order
    assert got["options"]["chunk_mb"] == 0.05 and mem["options"]["chunk_mb"] is None
    assert got["selection"]["params"] == mem["selection"]["params"]
    assert [p["C"] for p in got["selection"]["curve"]] == [p["C"] for p in mem["selection"]["curve"]]
    np.testing.assert_allclose([p["score"] for p in got["selection"]["curve"]],
                               [p["score"] for p in mem["selection"]["curve"]], atol=1 / 200 + 1e-9)
    a, b = predictions(tmp_path, "streamed"), predictions(tmp_path, "mem")
    assert np.mean(np.array(a) == np.array(b)) >= 0.99          # 300 test rows: <= 3 differ
    assert abs(got["test"]["accuracy"] - mem["test"]["accuracy"]) <= 3 / 300
    assert got["n"] == mem["n"] and got["embed_dim"] == 196 and got["converged"]
    # The saved model is the usual pipeline on raw embeddings.
    model = joblib.load(ArtifactPaths(tmp_path).run("pixels14", "streamed")["probe"])
    X_te = read_embeddings(fmnist_small).subset("test")[0]
    names = json.loads(json.dumps(read_embeddings(fmnist_small).class_names))
    assert [names[i] for i in model.predict(X_te)] == a


def test_streamed_path_search_matches_the_in_memory_path(fmnist_small, tmp_path,
                                                         one_torch_thread):
    # search: auto is the path for the torch solver, streamed or not: loose warm-started fits
    # up the grid, stopped 2 values past the best, then the full-tol refit.
    opts = {**OPTS, "search": "auto", "grid": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]}
    mem = train_probe(fmnist_small, "logreg", tmp_path, options=opts, name="mem")
    got = train_probe(fmnist_small, "logreg", tmp_path, options={**opts, "chunk_mb": 0.05},
                      name="streamed")
    assert mem["selection"]["search"] == got["selection"]["search"] == "path"
    assert got["selection"]["params"] == mem["selection"]["params"]
    curve = [p["C"] for p in got["selection"]["curve"]]
    assert curve == [p["C"] for p in mem["selection"]["curve"]] and len(curve) < 6  # stopped
    np.testing.assert_allclose([p["score"] for p in got["selection"]["curve"]],
                               [p["score"] for p in mem["selection"]["curve"]], atol=1 / 200 + 1e-9)
    assert abs(got["test"]["accuracy"] - mem["test"]["accuracy"]) <= 3 / 300


def test_chunk_mb_option_errors():
    from linprobe.models.probes import probe_options

    with pytest.raises(ValueError, match=r"'chunk_mb' probe option must be a float > 0.0"):
        probe_options("logreg", {"solver": "torch", "chunk_mb": 0})
    with pytest.raises(ValueError, match=r"'chunk_mb' .* Got solver 'sklearn'; set solver: torch"):
        probe_options("logreg", {"solver": "sklearn", "chunk_mb": 64, "few_shot": False})
    with pytest.raises(ValueError, match=r"few_shot: false"):
        probe_options("logreg", {"solver": "torch", "chunk_mb": 64})
    with pytest.raises(ValueError, match=r"'chunk_mb' probe option does not apply to probe "
                                         r"'linear_svm' \(only logreg"):
        probe_options("linear_svm", {"chunk_mb": 64})


def test_linprobe_train_streams_with_params_and_refuses_a_file_without_val(tmp_path):
    X, y = blobs(30, 3, 16, sep=2.0)
    split = ["train"] * 60 + ["val"] * 15 + ["test"] * 15
    order = np.random.default_rng(0).permutation(len(y))   # every split holds every class
    emb = write_h5(tmp_path / "emb.h5", X[order], y[order], split, list("abc"))
    noval = write_h5(tmp_path / "noval.h5", X[order], y[order],
                     ["train"] * 75 + ["test"] * 15, list("abc"))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"path": "data/x"}, "backbones": {"b": {"spec": "lite:efficientnet-lite0"}},
        "probes": {"big": {"probe": "logreg", "solver": "torch", "chunk_mb": 0.001,
                           "few_shot": False, "n_boot": 10, "grid": [0.1, 1.0]}}}))

    def linprobe(path):
        return subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", "train",
                               "--embeddings", str(path), "--probe", "big", "--params",
                               str(params), "--out-dir", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=300)

    ok = linprobe(emb)
    assert ok.returncode == 0, ok.stderr
    assert "streaming 16-row blocks (0.001 MiB) of 16 dims" in ok.stderr
    metrics = json.loads(ArtifactPaths(tmp_path / "out").run("emb", "big")["metrics"].read_text())
    assert metrics["options"]["chunk_mb"] == 0.001 and metrics["test"]["accuracy"] > 0.9
    bad = linprobe(noval)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("linprobe: error: ") and "noval.h5 has no 'val' samples; " \
        "chunk_mb selects C on the val split" in bad.stderr


@pytest.mark.slow   # a torchrun job of 2 processes (torch imported twice) + one process
def test_torchrun_train_on_two_gloo_ranks_equals_one_process(fmnist_small, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"path": "data/x"}, "backbones": {"b": {"spec": "lite:efficientnet-lite0"}},
        "probes": {"big": {"probe": "logreg", "solver": "torch", "chunk_mb": 0.05, "tol": 1e-6,
                           "few_shot": False, "n_boot": 10, "grid": [0.01, 0.1, 1.0],
                           "threads": 1}}}))
    args = ["train", "--embeddings", str(fmnist_small), "--probe", "big", "--params", str(params)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", "-m", "linprobe", *args, "--out-dir",
                          str(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stderr
    assert "streaming 66-row blocks (0.05 MiB) of 196 dims on 2 ranks" in two.stderr
    assert two.stdout.count("test accuracy") == 1          # rank 0 alone reports
    one = subprocess.run([sys.executable, "-m", "linprobe", *args, "--out-dir",
                          str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stderr
    m1, m2 = (json.loads(ArtifactPaths(tmp_path / d).run("pixels14", "big")["metrics"]
                         .read_text()) for d in ("one", "two"))
    assert m2["selection"]["params"] == m1["selection"]["params"]
    np.testing.assert_allclose([p["score"] for p in m2["selection"]["curve"]],
                               [p["score"] for p in m1["selection"]["curve"]], atol=1 / 200 + 1e-9)
    same = np.mean(np.array(predictions(tmp_path / "two", "big"))
                   == np.array(predictions(tmp_path / "one", "big")))
    assert same >= 0.99


def test_torchrun_train_without_chunk_mb_is_refused(fmnist_small, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")   # what torchrun sets; refused before any collective
    with pytest.raises(ValueError, match=r"under torchrun \(WORLD_SIZE=2\) .* give probe "
                                         r"'logreg' the options solver: torch and chunk_mb"):
        train_probe(fmnist_small, "logreg", tmp_path, options={"few_shot": False})
