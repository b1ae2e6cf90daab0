"""Typed probe entries: `probes: {<entry>: {probe: <registry name>, ...options}}` repeats a probe
with other options, and the variants are trained, named and reported side by side."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from linprobe.models.options import KnnOptions, LogregOptions, SvmOptions
from linprobe.pipeline.params import ParamsError, ProbeEntry, load_params, parse_params
from tests.features.imagedata import fashion_mnist
from tests.models.conftest import write_h5
from tests.pipeline.dvcproject import dvc, init_project
from tests.shipped import SHIPPED_PARAMS

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress"]
VARIANTS = {"logreg": {"n_boot": 50, "few_shot": False, "grid": [0.01, 0.1, 1.0]},
            "logreg_balanced": {"probe": "logreg", "class_weight": "balanced", "n_boot": 50,
                                "few_shot": False, "grid": [0.01, 0.1, 1.0]}}


def params_with(probes: dict) -> dict:
    return {"data": {"path": "data/x"},
            "backbones": {"lite0": {"spec": "lite:efficientnet-lite0"}}, "probes": probes}


def linprobe(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def pixels(tmp_path_factory) -> Path:
    """artifacts/embeddings/pix.h5: real Fashion-MNIST pixels (the bundled demo's test images,
    50 per class) pooled to 7x7 (49-d), 4 classes, unbalanced train (30/30/30/6 per class) so
    class weights change the fit; val 8, test 12."""
    images, labels = fashion_mnist()
    counts = {"train": [30, 30, 30, 6], "val": [8] * 4, "test": [12] * 4}
    X, y, split, start = [], [], [], [0] * 4
    for name, per_class in counts.items():
        for c, n in enumerate(per_class):
            rows = np.flatnonzero(labels == c)[start[c]:start[c] + n]
            start[c] += n
            X.append(images[rows].astype(np.float32).reshape(n, 7, 4, 7, 4).mean(axis=(2, 4))
                     .reshape(n, -1) / 255.0)
            y += [c] * n
            split += [name] * n
    root = tmp_path_factory.mktemp("entries") / "artifacts"
    (root / "embeddings").mkdir(parents=True)
    return write_h5(root / "embeddings" / "pix.h5", np.concatenate(X), np.array(y), split,
                    CLASSES, backbone="raw:pool7")


def test_entries_parse_into_typed_options():
    p = parse_params(params_with({**VARIANTS, "knn": {"temperature": 0.1},
                                  "svm_l2": {"probe": "linear_svm", "normalize": "l2"}}))
    assert p.probes["logreg"] == ProbeEntry("logreg", LogregOptions(
        n_boot=50, few_shot=False, grid=[0.01, 0.1, 1.0]))
    balanced = p.probes["logreg_balanced"]
    assert balanced.probe == "logreg" and balanced.options.class_weight == "balanced"
    assert isinstance(p.probes["knn"].options, KnnOptions)
    assert p.probes["knn"].options.temperature == 0.1
    assert type(p.probes["svm_l2"].options) is SvmOptions
    assert p.probes["svm_l2"].options.normalize == "l2"


@pytest.mark.parametrize("probes, fragments", [
    ({"lr": {"probe": "logreg_"}},
     [r"probes\.lr: unknown probe 'logreg_'", r"choose one of \['knn', 'linear_svm', 'logreg', "
      r"'ovr_linear_svm', 'ovr_logreg'\]", "Did you mean: logreg"]),
    ({"balanced": {"class_weight": "balanced"}},
     [r"probes\.balanced: unknown probe 'balanced'", r"`balanced: \{probe: logreg, \.\.\.\}`"]),
    ({"lr": {"probe": ["logreg"]}}, [r"probes\.lr: 'probe' must be a probe name"]),
    ({"logreg": {"val_fraction": 0.3}},
     [r"probes\.logreg: The 'val_fraction' probe option was renamed to holdout_fraction",
      r"data\.val_fraction is a different"]),
    ({"a b": {"probe": "logreg"}}, [r"probes\.a b is not a valid probe name"]),
    ({"svm": {"probe": "linear_svm", "temperature": 0.1}},
     [r"probes\.svm: The 'temperature' probe option does not apply to probe 'linear_svm'"]),
])
def test_bad_entries_name_the_entry_and_the_fix(probes, fragments):
    with pytest.raises(ParamsError) as info:
        parse_params(params_with(probes))
    for fragment in fragments:
        assert re.search(fragment, str(info.value)), str(info.value)


def test_shipped_params_entries_are_typed():
    params = load_params(SHIPPED_PARAMS)
    assert all(isinstance(e, ProbeEntry) for e in params.probes.values())
    assert params.probes["logreg"].probe == "logreg"


def test_two_variants_of_one_probe_train_side_by_side_and_reach_the_report(pixels, tmp_path):
    artifacts = pixels.parent.parent
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(params_with(VARIANTS)))
    for entry in VARIANTS:
        r = linprobe("train", "--embeddings", pixels, "--probe", entry, "--out-dir", artifacts,
                     "--params", params)
        assert r.returncode == 0, r.stderr
        assert f"pix / {entry}: test accuracy = " in r.stdout
    runs = {e: json.loads((artifacts / "metrics" / "pix" / f"{e}.json").read_text())
            for e in VARIANTS}
    for entry, m in runs.items():
        assert m["probe"] == entry and m["probe_type"] == "logreg"
        assert (artifacts / "probes" / "pix" / f"{entry}.joblib").is_file()
        assert (artifacts / "predictions" / "pix" / f"{entry}.csv").is_file()
    assert runs["logreg"]["options"]["class_weight"] is None
    assert runs["logreg_balanced"]["options"]["class_weight"] == "balanced"
    # The weights reach the fit: the rare class is recalled at least as often when balanced.
    recall = {e: m["per_class"]["Dress"]["recall"] for e, m in runs.items()}
    assert recall["logreg_balanced"] >= recall["logreg"], recall
    assert runs["logreg"]["per_class"] != runs["logreg_balanced"]["per_class"]

    from linprobe.reports.build import build_report
    html = build_report(artifacts, tmp_path / "report" / "index.html",
                        params_file=params).read_text(encoding="utf-8")
    grid = html[html.index('<table id="overview">'):]
    grid = grid[:grid.index("</table>")]
    assert re.findall(r"<th>([^<]+)</th>", grid) == ["logreg", "logreg_balanced", "mean"]
    assert re.findall(r'href="#run-pix-(\w+)"', grid) == ["logreg", "logreg_balanced"]
    board = html[html.index('id="leaderboard-table"'):]
    board = board[:board.index("</table>")]
    assert re.findall(r'<a href="#run-pix-\w+">pix</a></td>\s*<td class="l">(\w+) ',
                      board) == ["logreg", "logreg_balanced"]


def test_train_without_params_takes_a_registry_name(pixels, tmp_path):
    r = linprobe("train", "--embeddings", pixels, "--probe", "logreg_balanced", "--out-dir",
                 tmp_path / "o")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "linprobe: error: unknown probe 'logreg_balanced'" in r.stderr
    assert "an entry of params.yaml needs --params params.yaml" in r.stderr
    assert not (tmp_path / "o").exists()


def test_train_with_params_refuses_an_entry_with_a_renamed_option(pixels, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(params_with({"logreg": {"val_fraction": 0.3}})))
    r = linprobe("train", "--embeddings", pixels, "--probe", "logreg", "--out-dir",
                 tmp_path / "o", "--params", params)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert re.search(r"linprobe: error: .*params\.yaml: probes\.logreg: The 'val_fraction' probe "
                     r"option was renamed to holdout_fraction", r.stderr), r.stderr
    assert not (tmp_path / "o").exists()


def test_dvc_train_matrix_is_keyed_by_entry_names(tmp_path):
    root = init_project(tmp_path, None)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["probes"] = VARIANTS
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = dvc("stage", "list", cwd=root)
    for backbone in params["backbones"]:
        for entry in VARIANTS:
            assert f"train@{backbone}-{entry}" in stages
