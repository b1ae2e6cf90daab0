"""Ctrl-C (SIGINT) ends every stage within seconds: exit 130, one `linprobe: interrupted` line,
no traceback, no artifact under a final name; including inside a LinearSVC fit, which runs in
liblinear's C code for minutes without checking for signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.models.conftest import write_h5
from tests.reports.realruns import build_artifacts

from .dvcproject import copy_slice


def start(*args: str | Path, cwd: Path) -> subprocess.Popen:
    """The CLI in a subprocess with Python's normal SIGINT handling (a background shell may
    start children with SIGINT ignored, and Python would keep it so)."""
    return subprocess.Popen([sys.executable, "-m", "linprobe.pipeline.cli", *map(str, args)],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != "LINPROBE_DEBUG"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 180) -> str:
    """Read stderr until ``text`` appears (the stage has reached its long part)."""
    seen, deadline = "", time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen
        seen += proc.stderr.read(1)
    return seen


def interrupt(proc: subprocess.Popen, seen: str, within: float = 5.0) -> str:
    """SIGINT, then assert a clean exit 130 within ``within`` seconds; the whole stderr."""
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running {within} s after SIGINT")
    err = seen + err
    assert proc.returncode == 130, err
    assert "linprobe: interrupted" in err and "Traceback" not in err, err
    print(f"exit {time.monotonic() - t0:.2f} s after SIGINT")
    return err


def final_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.mark.parametrize("probe", ["linear_svm", "logreg"])
def test_ctrl_c_inside_a_long_solver_fit(probe, tmp_path):
    # Random labels, a huge C, tol 1e-12 and no iteration cap: the fit runs for many minutes.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 512)).astype(np.float32)
    split = np.array(["train"] * 2000 + ["val"] * 500 + ["test"] * 500)
    write_h5(tmp_path / "e.h5", X, rng.integers(0, 10, 3000), split, [f"c{i}" for i in range(10)])
    opts = {"grid": [1e3 if probe == "linear_svm" else 1e6], "tol": 1e-12,
            "max_iter": 10**8, "few_shot": False}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "data": {"path": "x"}, "backbones": {"a": {"spec": "lite:efficientnet-lite0"}},
        "probes": {probe: opts}}))
    proc = start("train", "--embeddings", "e.h5", "--probe", probe, "--out-dir", "out",
                 "--params", "params.yaml", cwd=tmp_path)
    seen = wait_for(proc, "selecting C")
    time.sleep(2.0)   # well inside the fit (scaling 2000 x 512 takes milliseconds)
    assert proc.poll() is None, "the fit was meant to run for minutes"
    interrupt(proc, seen)
    assert not (tmp_path / "out").exists() or final_files(tmp_path / "out") == []


def test_ctrl_c_during_extract(tmp_path):
    copy_slice(tmp_path / "data", {"train": 40, "test": 10}, classes=3)
    proc = start("extract", "--backbone", "torchvision:resnet50:none", "--data", "data",
                 "--out", "emb.h5", "--image-size", "160", "--batch-size", "2",
                 "--workers", "0", cwd=tmp_path)
    seen = wait_for(proc, "img")   # the progress bar: images are being embedded
    time.sleep(1.0)
    assert proc.poll() is None
    err = interrupt(proc, seen)
    assert "re-run the same command to resume" in err
    assert not (tmp_path / "emb.h5").exists()


def test_ctrl_c_during_report(tmp_path):
    build_artifacts(tmp_path, ["a", "b", "c", "d"])
    proc = start("report", "--artifacts", "artifacts", "--out", "report/index.html",
                 cwd=tmp_path)
    time.sleep(1.5)   # imports done, t-SNE/MMD being computed
    assert proc.poll() is None, "the report finished before the signal; make it slower"
    interrupt(proc, "")
    assert not (tmp_path / "report" / "index.html").exists()
