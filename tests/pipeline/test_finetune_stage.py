"""dvc.yaml's finetune stage and params.yaml's finetune section agree, and `linprobe check` says
what an enabled section still lacks (without running DVC: see test_dvc_finetune.py for that)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from linprobe.finetune.config import FinetuneConfig
from linprobe.pipeline.finetune_stage import STAGE_KEYS, finetune_runs
from linprobe.pipeline.params import load_params
from tests.shipped import SHIPPED_PARAMS

REPO = Path(__file__).resolve().parents[2]


def _check(params: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    params["data"]["path"] = str(REPO / "data" / "fashion-mnist-demo")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return subprocess.run([sys.executable, "-m", "linprobe.pipeline.cli", "check", "--params",
                           str(tmp_path / "params.yaml")], capture_output=True, text=True)


def _shipped() -> dict:
    return yaml.safe_load(SHIPPED_PARAMS.read_text())


def test_stage_lists_every_setting_but_the_run_lists():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["finetune"]
    listed = [p.removeprefix("finetune.") for p in stage["params"] if p.startswith("finetune.")]
    assert sorted(listed) == sorted(STAGE_KEYS)
    assert "finetune" not in stage["params"]  # the whole section would re-run every run
    assert {"backbones", "arms"}.isdisjoint(STAGE_KEYS)
    assert stage["matrix"] == {"backbone": "${finetune.backbones}", "arm": "${finetune.arms}"}


def test_shipped_section_is_off_holds_every_stage_key_and_the_defaults():
    raw = _shipped()["finetune"]
    assert set(STAGE_KEYS) <= set(raw)
    params = load_params(SHIPPED_PARAMS)
    assert params.finetune == FinetuneConfig()  # the comments' values are the library's
    assert finetune_runs(params) == []


def test_check_names_the_missing_settings_of_an_enabled_section(tmp_path):
    params = _shipped()
    params["finetune"]["backbones"] = ["lite0"]
    del params["finetune"]["lrs"], params["finetune"]["augment"]
    r = _check(params, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "finetune is missing lrs, augment" in r.stderr
    assert "lrs: [0.0001, 0.001]" in r.stderr and '"hflip": true' in r.stderr


def test_check_accepts_a_minimal_section_while_off(tmp_path):
    params = _shipped()
    params["finetune"] = {"backbones": []}
    r = _check(params, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "fine-tune" not in r.stdout


def test_check_refuses_a_probe_named_like_an_arm(tmp_path):
    params = _shipped()
    params["finetune"]["backbones"] = ["lite0"]
    params["finetune"]["arms"] = ["scratch"]
    params["probes"]["scratch"] = {"probe": "logreg"}
    r = _check(params, tmp_path)
    assert r.returncode == 2
    assert "probes.scratch: a probe entry may not be named like the fine-tune arm" in r.stderr


def test_check_counts_the_fine_tune_runs(tmp_path):
    params = _shipped()
    params["finetune"]["backbones"] = ["lite0", "lite2"]
    r = _check(params, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3 backbones x 3 probes, 4 fine-tune runs" in r.stdout
