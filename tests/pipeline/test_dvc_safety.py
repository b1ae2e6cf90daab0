"""Real `dvc repro` of the shipped dvc.yaml: a data path with spaces (and a `$`) reaches the
commands literally; a bad config stops at the `check` stage before any extraction; a params edit
that concerns no extraction re-runs none; a backbone removed from params leaves the report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from linprobe.schema import ArtifactPaths

from .dvcproject import (BIN, copy_project, copy_slice, dvc, edit_params, init_project, ran_stages,
                         run)

DATA = "data/my demo $HOME"   # spaces, and a `$` a shell would expand outside quotes


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """(project, output of its first `dvc repro`): built and committed once; tests get copies."""
    root = tmp_path_factory.mktemp("dvcsafe")
    copy_slice(root / DATA, {"train": 6, "val": 2, "test": 3}, classes=3)
    init_project(root, DATA)
    return root, dvc("repro", cwd=root)


@pytest.fixture
def project(built, tmp_path) -> Path:
    return copy_project(built[0], tmp_path / "dvcsafe")


def test_data_path_with_spaces_works_end_to_end(built):
    root, out = built
    assert ran_stages(out) == {"check", "extract@lite0", "extract@resnet18_random",
                               "train@lite0-logreg", "train@resnet18_random-logreg", "report"}
    art = ArtifactPaths(root / "artifacts")
    assert art.check_stamp.read_text() == "linprobe check passed\n"
    html = art.report.read_text()
    assert 'id="run-lite0-logreg"' in html and 'id="run-resnet18_random-logreg"' in html
    assert "stale run" not in html


def test_bad_config_stops_at_check_before_any_extraction(project):
    edit_params(project, lambda p: p.update(
        probes={"logreg": {}, "linear_svm": {"temperature": 0.1}},
        extract={**p["extract"], "image_size": 48}))   # would re-run every extraction
    t0 = time.monotonic()
    r = run(str(BIN / "dvc"), "repro", cwd=project)
    seconds = time.monotonic() - t0
    out = r.stdout + r.stderr
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
