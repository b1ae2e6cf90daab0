"""User mistakes met after the params are fine: a torch solver asked for a GPU that is not there,
hand-edited metrics JSON, an oversized image in the report's gallery, a bad --params file,
unknown command-line options. Each ends with one `linprobe: error:` line (exit 2) naming the
file or parameter and the fix, no traceback, nothing modified."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.hostile.harness import expect_error, expect_ok
from tests.models.conftest import blobs, split_names, write_h5
from tests.reports.realruns import build_artifacts

NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}   # the same on machines that have one


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Real artifacts (2 backbones x 2 probes, PNG data) made once; tests work on copies (whose
    embeddings still name the original data folder)."""
    return build_artifacts(tmp_path_factory.mktemp("art"), ["a", "b", "c"]).parent


@pytest.fixture
def project(built, tmp_path) -> Path:
    shutil.copytree(built, tmp_path / "p")
    return tmp_path / "p"


@pytest.fixture
def embeddings(tmp_path) -> Path:
    X, y = blobs(12, 3, 8, sep=3.0)
    return write_h5(tmp_path / "e.h5", X, y, split_names(y), list("abc"))


def params_file(tmp_path: Path, probes: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "data"},
                                    "backbones": {"a": {"spec": "torchvision:resnet18:none"}},
                                    "probes": probes}))
    return path


def test_torch_solver_on_cuda_without_a_gpu_at_train(embeddings, tmp_path):
    params = params_file(tmp_path, {"logreg": {"solver": "torch", "device": "cuda",
                                               "few_shot": False}})
    expect_error(["train", "--embeddings", embeddings, "--probe", "logreg", "--out-dir",
                  tmp_path / "out", "--params", params],
                 [r"'device' probe option is 'cuda'", "no CUDA GPU", "device: auto"],
                 watch=[embeddings, params], env=NO_GPU)
    assert not (tmp_path / "out" / "metrics").exists()


@pytest.mark.parametrize("probe", ["logreg", "linear_svm"])
def test_torch_solver_on_cuda_without_a_gpu_at_check(tmp_path, probe):
    (tmp_path / "data").mkdir()
    params = params_file(tmp_path, {probe: {"solver": "torch", "device": "cuda"}})
    expect_error(["check", "--params", params], [rf"probes\.{probe}\.device", "no CUDA GPU"],
                 watch=[params], env=NO_GPU)


METRICS_EDITS = {
    "invalid_json": (lambda t: t[:-20], r"is not valid JSON"),
    "top_level_list": (lambda t: "[1, 2]", r"the top level must be a JSON object"),
    "class_names_int": (lambda t: json.dumps({**json.loads(t), "class_names": 5}),
                        r"key 'class_names' must be a list, got 5"),
    "missing_test": (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "test"}),
                     r"key 'test' is missing"),
    "accuracy_text": (lambda t: json.dumps({**json.loads(t), "test": {"accuracy": "high"}}),
                      r"key 'test\.accuracy' must be a number or null, got 'high'"),
    "curve_items": (lambda t: json.dumps({**json.loads(t), "selection": {"curve": [5]}}),
                    r"key 'selection\.curve' must be a list of objects"),
    "task_unknown": (lambda t: json.dumps({**json.loads(t), "task": "regression"}),
                     r"key 'task' must be 'multiclass' or 'multilabel'"),
    "newer_version": (lambda t: json.dumps({**json.loads(t), "schema_version": 99}),
                      r"schema_version 99, but this linprobe reads versions up to 1; upgrade"),
}


@pytest.mark.parametrize("edit, match", METRICS_EDITS.values(), ids=METRICS_EDITS.keys())
def test_hand_edited_metrics_json(edit, match, project):
    path = project / "artifacts" / "metrics" / "mnv3" / "logreg.json"
    path.write_text(edit(path.read_text()))
    expect_error(["report", "--artifacts", project / "artifacts", "--out", project / "r.html"],
                 [str(path).replace("\\", "\\\\"), match, "linprobe train"],
                 watch=[project])
    assert not (project / "r.html").exists()


def test_decompression_bomb_in_the_gallery_is_skipped(tmp_path):
    project = build_artifacts(tmp_path, ["a", "b", "c"]).parent
    # Every misclassified test image of one run becomes a 144-megapixel PNG (a few kB on disk).
    bomb = project / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)
    with open(project / "artifacts" / "predictions" / "mnv3" / "logreg.csv") as fh:
        wrong = [r["id"] for r in csv.DictReader(fh) if r["actual"] != r["predicted"]]
    assert wrong
    for image_id in wrong:
        shutil.copy(bomb, project / "data" / image_id)
    r = expect_ok(["report", "--artifacts", project / "artifacts", "--out", project / "r.html"],
                  watch=[project / "data"])
    assert "decompression bomb" in r.err and "linprobe: warning:" in r.err
    assert (project / "r.html").is_file()


@pytest.mark.parametrize("content, match", [
    (None, r"no such params file"),
    (b"\xff\xfe\x00garbage\x00\x81", r"not a UTF-8 text file"),
    (b"- just\n- a list\n", r"the top level must be a mapping"),
    (b"data: {path: [unclosed\n", r"not valid YAML"),
    (b"!!python/object/apply:os.system ['touch PWNED']\n", r"not valid YAML"),
], ids=["missing", "binary", "list", "broken_yaml", "python_tag"])
def test_bad_params_file_for_report(content, match, project):
    params = project / "bad.yaml"
    if content is not None:
        params.write_bytes(content)
    expect_error(["report", "--artifacts", project / "artifacts", "--out", project / "r.html",
                  "--params", params], [str(params), match], watch=[project], cwd=project)
    assert not (project / "PWNED").exists() and not (project / "r.html").exists()


@pytest.mark.parametrize("args, match", [
    (["train", "--embeddings", "e.h5", "--probe", "logreg", "--out-dir", "o", "--frobnicate"],
     r"unrecognized arguments: --frobnicate"),
    (["extrct", "--data", "x"], r"invalid choice: 'extrct'"),
    (["check", "--params"], r"--params: expected one argument"),
])
def test_unknown_command_line_options(args, match, tmp_path):
    expect_error(args, match, cwd=tmp_path)


def test_report_with_params_leaves_out_stale_runs(project):
    params = params_file(project, {"logreg": {}})
    params.write_text(params.read_text().replace("a:\n    spec: torchvision:resnet18:none",
                                                 "mnv3:\n    spec: torchvision:resnet18:none"))
    r = expect_ok(["report", "--artifacts", project / "artifacts", "--out", project / "r.html",
                   "--params", params], watch=[project / "artifacts"])
    assert "3 stale run(s)" in r.err and "lite0/logreg" in r.err and "mnv3/knn" in r.err
    html = (project / "r.html").read_text()
    assert "3 stale run(s) left out" in html
    assert 'id="run-mnv3-logreg"' in html
    assert 'id="run-lite0-logreg"' not in html and 'id="run-mnv3-knn"' not in html
