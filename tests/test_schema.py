"""linprobe.schema is the one home of the artifact layout: dvc.yaml declares exactly its paths,
metrics files are versioned, and the schema module stays importable without heavy packages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from linprobe.schema import SCHEMA_VERSION, ArtifactPaths, check_metrics, read_metrics

REPO = Path(__file__).resolve().parents[1]
ROOT = ArtifactPaths("artifacts")   # dvc.yaml's artifacts root


def _paths(entries: list) -> list[Path]:
    """dvc.yaml outs/deps/metrics/plots entries (a path, or {path: options}) as paths."""
    return [Path(next(iter(e)) if isinstance(e, dict) else e) for e in entries]


def _stage(name: str, **item: str) -> dict:
    """One stage of dvc.yaml with ${key} / ${item.<name>} substituted (others left as they are)."""
    text = json.dumps(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name])
    for key, value in item.items():
        text = text.replace("${%s}" % key, value)
    stage = json.loads(text)
    return stage.get("do", stage)


def _artifact_deps(stage: dict) -> list[Path]:
    return [p for p in _paths(stage["deps"]) if not str(p).startswith("$")]


def test_dvc_yaml_paths_are_the_schema_paths():
    check = _stage("check")
    assert _paths(check["outs"]) == [ROOT.check_stamp]
    assert f"--stamp {ROOT.check_stamp}" in check["cmd"]

    extract = _stage("extract", key="B")
    assert _paths(extract["outs"]) == [ROOT.embeddings("B")]
    assert _artifact_deps(extract) == [ROOT.check_stamp]
    assert f"--out {ROOT.embeddings('B')} " in extract["cmd"]

    train = _stage("train", **{"item.backbone": "B", "item.probe": "P"})
    run = ROOT.run("B", "P")
    assert _paths(train["outs"]) == [run["probe"], run["scores"]]
    assert _paths(train["plots"]) == [run["predictions"]]
    assert _paths(train["metrics"]) == [run["metrics"]]
    assert _artifact_deps(train) == [ROOT.embeddings("B")]
    assert f"--embeddings {ROOT.embeddings('B')} " in train["cmd"]
    assert f"--out-dir {ROOT.root} " in train["cmd"]

    finetune = _stage("finetune", **{"item.backbone": "B", "item.arm": "A"})
    tuned = ROOT.finetune_run("B", "A")
    assert _paths(finetune["outs"]) == [tuned["model"], tuned["scores"]]
    assert _paths(finetune["plots"]) == [tuned["predictions"]]
    assert _paths(finetune["metrics"]) == [tuned["metrics"]]
    assert _artifact_deps(finetune) == [ROOT.check_stamp]
    assert f"--out-dir {ROOT.root}" in finetune["cmd"]
    # The checkpoints are no out (DVC removes outs before a run; a killed run resumes from them).
    outs = _paths(finetune["outs"] + finetune["plots"] + finetune["metrics"])
    assert not any(ROOT.finetune_checkpoints("B", "A").is_relative_to(p) for p in outs)

    report = _stage("report")
    assert _artifact_deps(report) == [ROOT.embeddings_dir, ROOT.metrics_dir, ROOT.predictions_dir]
    assert _paths(report["outs"]) == [ROOT.report]
    assert _paths(report["plots"]) == [ROOT.plots_dir]
    assert re.search(rf"--artifacts {ROOT.root} --out {ROOT.report} .*--plots-dir {ROOT.plots_dir}",
                     report["cmd"])


def test_metrics_without_schema_version_are_version_1(tmp_path):
    """Files written before the version existed: read as version 1, headline from the task,
    backbone and probe from the path."""
    path = tmp_path / "metrics" / "b" / "p.json"
    m = check_metrics({"task": "multilabel", "class_names": ["x"], "test": {"mAP": 0.5}}, path)
    assert m == {"schema_version": 1, "headline": "mAP", "backbone": "b", "probe": "p",
                 "task": "multilabel", "class_names": ["x"], "test": {"mAP": 0.5}}


def test_optional_keys_of_the_wrong_type_are_dropped(tmp_path):
    data = {"task": "multiclass", "class_names": ["x", "y"], "test": {"accuracy": 1.0},
            "fit_seconds": "fast", "converged": None, "seed": True, "per_class": [1],
            "probe_type": "logreg", "solver": "sklearn", "my_note": "kept"}
    m = check_metrics(data, tmp_path / "m.json")
    assert {"fit_seconds", "seed", "per_class"}.isdisjoint(m)
    assert m["converged"] is None and m["probe_type"] == "logreg" and m["solver"] == "sklearn"
    assert m["my_note"] == "kept"  # unknown keys pass through


@pytest.mark.parametrize("version, match", [
    (SCHEMA_VERSION + 1, rf"schema_version {SCHEMA_VERSION + 1}, but this linprobe reads "
                         rf"versions up to {SCHEMA_VERSION}; upgrade linprobe"),
    ("1", r"key 'schema_version' must be an int >= 1, got '1'"),
    (0, r"key 'schema_version' must be an int >= 1, got 0"),
])
def test_unknown_schema_versions_are_refused(version, match, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema_version": version, "task": "multiclass",
                                "class_names": ["x"], "test": {}}))
    with pytest.raises(ValueError, match=match) as err:
        read_metrics(path)
    assert str(path) in str(err.value)


def test_schema_and_package_import_nothing_heavy():
    code = ("import sys, linprobe, linprobe.schema; "
            "heavy = {'numpy', 'torch', 'sklearn', 'h5py', 'pandas'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
