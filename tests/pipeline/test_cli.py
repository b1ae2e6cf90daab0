"""The `linprobe` console script: argument errors and bad params give one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.shipped import SHIPPED_PARAMS

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_check_accepts_shipped_params():
    r = run("check", "--params", "params.yaml", cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "3 backbones x" in r.stdout


def test_check_rejects_missing_data_path(tmp_path):
    params = yaml.safe_load(SHIPPED_PARAMS.read_text())
    params["data"]["path"] = str(tmp_path / "no-such-folder")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = run("check", "--params", str(tmp_path / "params.yaml"))
    assert r.returncode == 2
    assert "data.path" in r.stderr and "no-such-folder" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_rejects_unknown_probe(tmp_path):
    params = yaml.safe_load(SHIPPED_PARAMS.read_text())
    params["data"]["path"] = str(REPO / params["data"]["path"])
    params["probes"] = {"logistic": {}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = run("check", "--params", str(tmp_path / "params.yaml"))
    assert r.returncode == 2
    assert "probes.logistic" in r.stderr and "logreg" in r.stderr


def test_bad_image_size_is_an_argument_error(tmp_path):
    r = run("extract", "--backbone", "lite:efficientnet-lite0", "--data", str(tmp_path),
            "--out", str(tmp_path / "x.h5"), "--image-size", "tiny")
    assert r.returncode == 2
    assert "--image-size" in r.stderr and "'tiny'" in r.stderr


def test_backbones_lists_specs_with_offline_status():
    r = run("backbones", "efficientnet-lite*")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["spec", "embed_dim"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {f"lite:efficientnet-lite{i}" for i in range(3)}
    assert all(row[1] == "1280" and row[-1] == "yes" for row in rows.values())


def test_unknown_backbone_and_missing_data_are_one_clear_line(tmp_path):
    r = run("extract", "--backbone", "torchvision:resnt18", "--data", str(REPO / "data" /
            "fashion-mnist-demo"), "--out", str(tmp_path / "x.h5"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "resnt18" in r.stderr and "resnet18" in r.stderr  # the suggestion
    r = run("extract", "--backbone", "torchvision:resnet18:none", "--data",
            str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.h5"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nowhere" in r.stderr
    assert not (tmp_path / "x.h5").exists()
