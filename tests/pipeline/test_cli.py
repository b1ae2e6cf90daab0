"""The `linprobe` console script: argument errors and bad params give one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_check_accepts_shipped_params():
    r = run("check", "--params", "params.yaml", cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "3 backbones x" in r.stdout


def test_check_rejects_missing_data_path(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["path"] = str(tmp_path / "no-such-folder")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = run("check", "--params", str(tmp_path / "params.yaml"))
    assert r.returncode == 2
    assert "data.path" in r.stderr and "no-such-folder" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_image_size_is_an_argument_error(tmp_path):
    r = run("extract", "--backbone", "lite:efficientnet-lite0", "--data", str(tmp_path),
            "--out", str(tmp_path / "x.h5"), "--image-size", "tiny")
    assert r.returncode == 2
    assert "--image-size" in r.stderr and "'tiny'" in r.stderr
