"""Real `dvc repro` of the shipped dvc.yaml: a data path with spaces (and a `$`) reaches the
commands literally; a bad config stops at the `check` stage before any extraction; a params edit
that concerns no extraction re-runs none; a backbone removed from params leaves the report."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from linprobe.schema import ArtifactPaths

from .dvcproject import BIN, dvc, init_project, ran_stages
from .test_dvc_repro import copy_slice

DATA = "data/my demo $HOME"   # spaces, and a `$` a shell would expand outside quotes


def edit_params(project: Path, edit) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    edit(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dvcsafe")
    copy_slice(root / DATA, {"train": 6, "val": 2, "test": 3}, classes=3)
    return init_project(root, DATA)


def test_data_path_with_spaces_works_end_to_end(project):
    out = dvc("repro", cwd=project)
    assert ran_stages(out) == {"check", "extract@lite0", "extract@resnet18_random",
                               "train@lite0-logreg", "train@resnet18_random-logreg", "report"}
    art = ArtifactPaths(project / "artifacts")
    assert art.check_stamp.read_text() == "linprobe check passed\n"
    html = art.report.read_text()
    assert 'id="run-lite0-logreg"' in html and 'id="run-resnet18_random-logreg"' in html
    assert "stale run" not in html


def test_bad_config_stops_at_check_before_any_extraction(project):
    before = (project / "params.yaml").read_text()
    edit_params(project, lambda p: p.update(
        probes={"logreg": {}, "linear_svm": {"temperature": 0.1}},
        extract={**p["extract"], "image_size": 48}))   # would re-run every extraction
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    t0 = time.monotonic()
    r = subprocess.run([str(BIN / "dvc"), "repro"], cwd=project, env=env, capture_output=True,
                       text=True)
    seconds = time.monotonic() - t0
    out = r.stdout + r.stderr
    (project / "params.yaml").write_text(before)
    assert r.returncode != 0, out
    assert ran_stages(out) == {"check"}, out
    assert "linprobe: error:" in out and "probes.linear_svm" in out and "temperature" in out
    assert "Traceback" not in out
    print(f"dvc repro stopped at check after {seconds:.1f} s")


def test_params_edit_for_probes_only_reruns_no_extraction(project):
    edit_params(project, lambda p: p["probes"]["logreg"].update(n_boot=200))
    out = dvc("repro", cwd=project)
    assert ran_stages(out) == {"check", "train@lite0-logreg", "train@resnet18_random-logreg",
                               "report"}, out


def test_removed_backbone_leaves_the_report(project):
    edit_params(project, lambda p: p["backbones"].pop("lite0"))
    out = dvc("repro", cwd=project)
    assert ran_stages(out) == {"check", "report"}, out
    # DVC keeps the removed stages' outputs ...
    art = ArtifactPaths(project / "artifacts")
    assert art.metrics("lite0", "logreg").is_file()
    html = art.report.read_text()
    # ... but the report ranks only what params.yaml asks for, and says what it left out.
    assert 'id="run-lite0-logreg"' not in html and 'id="run-resnet18_random-logreg"' in html
    assert "1 stale run(s) left out" in html and "lite0/logreg" in html
    assert not art.learning_curve(art.plots_dir, "lite0", "logreg").exists()
