"""A fine-tune run killed with SIGKILL after its first epoch checkpoint resumes from it and ends
with the same metrics, predictions and scores as an uninterrupted run (real processes, CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from linprobe.schema import ArtifactPaths

from .conftest import write_params

# Wall-clock and machine facts differ between runs; everything else must not.
_TIMING = {"seconds", "images_per_s", "fit_seconds", "train_cost", "threads"}


def _command(params: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "linprobe.pipeline.cli", "finetune", "--params", str(params),
            "--backbone", "lite0", "--arm", "finetune", "--out-dir", str(out), *extra]


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}


def _stable(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in _TIMING}
    out["options"] = {k: v for k, v in metrics["options"].items() if k != "threads"}
    out["history"] = [{k: v for k, v in h.items() if k not in _TIMING}
                      for h in metrics["history"]]
    return out


@pytest.mark.slow  # three real processes of a few epochs each: ~2 min on 2 busy cores
def test_sigkill_after_first_epoch_resumes_to_the_same_result(tmp_path, tiny_data):
    params = write_params(tmp_path / "params.yaml", tiny_data, epochs=3, lrs=[0.001, 0.003])
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = subprocess.run(_command(params, whole), env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr

    ckpt = ArtifactPaths(killed).finetune_checkpoints("lite0", "finetune") / "lr0.pt"
    proc = subprocess.Popen(_command(params, killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    paths = ArtifactPaths(killed).finetune_run("lite0", "finetune")
    assert not paths["metrics"].exists()   # killed mid-run: nothing claimed complete

    # Another threads setting (the same count: OMP_NUM_THREADS=1 caps auto) still resumes:
    # threads are no part of a run's identity.
    resumed = subprocess.run(_command(params, killed, "--threads", "1"), env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming lr 0.001 at epoch 2" in resumed.stderr

    a = json.loads(ArtifactPaths(whole).metrics("lite0", "finetune").read_text())
    b = json.loads(paths["metrics"].read_text())
    assert len(b["history"]) == 6 and _stable(a) == _stable(b)
    assert (ArtifactPaths(whole).predictions("lite0", "finetune").read_bytes()
            == paths["predictions"].read_bytes())
    np.testing.assert_array_equal(np.load(ArtifactPaths(whole).scores("lite0", "finetune")),
                                  np.load(paths["scores"]))
    wa, wb = (load_file(ArtifactPaths(d).finetuned_model("lite0", "finetune"))
              for d in (whole, killed))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not ckpt.parent.exists()   # checkpoints go once the run is complete
