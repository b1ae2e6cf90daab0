"""Real `dvc repro` of the shipped dvc.yaml in a temporary git repository.

Tiny real data (a slice of the bundled Fashion-MNIST demo) at 32 px keeps it fast; the point is
the pipeline's wiring: everything is produced, a second repro does nothing, and adding a backbone
runs only that backbone's stages and the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linprobe.features.store import read_attrs
from linprobe.schema import ArtifactPaths

from .dvcproject import build_committed, copy_project, dvc, edit_params, ran_stages

REL = ArtifactPaths("artifacts")  # as dvc.yaml and `dvc metrics/plots show` name them


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """(project, output of its first `dvc repro`): built and committed once; tests get copies."""
    root = tmp_path_factory.mktemp("dvcproj")
    return build_committed(root)


@pytest.fixture
def project(built, tmp_path) -> Path:
    return copy_project(built[0], tmp_path / "dvcproj")


def test_repro_builds_everything_then_is_a_no_op(built, project):
    assert ran_stages(built[1]) == {"check", "extract@lite0", "extract@resnet18_random",
                                    "train@lite0-logreg", "train@resnet18_random-logreg",
                                    "report"}
    art = ArtifactPaths(project / "artifacts")
    for name in ("lite0", "resnet18_random"):
        assert art.embeddings(name).is_file()
        assert all(path.is_file() for path in art.run(name, "logreg").values())
        metrics = json.loads(art.metrics(name, "logreg").read_text())
        assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
        assert metrics["n"] == {"train": 32, "val": 16, "test": 20}
    html = art.report.read_text()
    assert "lite0" in html and "resnet18_random" in html

    again = dvc("repro", cwd=project)
    assert ran_stages(again) == set(), again

    # DVC-native outputs: the metrics and plots that the stages declare.
    shown = json.loads(dvc("metrics", "show", "--json", cwd=project))
    files = shown[""]["data"]  # "" = the workspace
    acc = files[str(REL.metrics("lite0", "logreg"))]["data"]["test"]["accuracy"]
    assert 0.0 <= acc <= 1.0
    plots = json.loads(dvc("plots", "show", "--json", cwd=project))
    assert "errors" not in plots, plots.get("errors")
    for name in ("lite0", "resnet18_random"):
        assert str(REL.predictions(name, "logreg")) in plots["data"]
        assert str(REL.learning_curve(REL.plots_dir, name, "logreg")) in plots["data"]


def test_leftovers_beside_the_embeddings_do_not_rerun_the_report(project):
    # The report depends on the embeddings folder; what a killed or hand-sharded run leaves there
    # (a partial file, a torn fresh partial, a shards folder, a lock) is not an embeddings file.
    folder = ArtifactPaths(project / "artifacts").embeddings("lite0").parent
    (folder / "extra.h5.partial").write_bytes(b"\x89HDF\r\n\x1a\n")
    (folder / "extra.h5.partial.new").write_bytes(b"")
    (folder / "extra.h5.shards").mkdir()
    (folder / "extra.h5.shards" / "extra-00000-of-00002.h5.partial").write_bytes(b"")
    (folder / "extra.h5.linprobe-lock").write_text("")
    out = dvc("repro", cwd=project)
    assert ran_stages(out) == set(), out


def test_adding_a_backbone_runs_only_its_stages(project):
    # An intermediate layer (global-average-pooled), set per backbone in params.yaml.
    edit_params(project, lambda p: p["backbones"].update(
        mnv3={"spec": "torchvision:mobilenet_v3_small:none", "layer": "features.6"}))
    out = dvc("repro", cwd=project)
    # check re-runs (backbones changed) but its output is unchanged: no other extraction.
    assert ran_stages(out) == {"check", "extract@mnv3", "train@mnv3-logreg", "report"}, out
    attrs = read_attrs(ArtifactPaths(project / "artifacts").embeddings("mnv3"))
    assert attrs["layer"] == "features.6" and attrs["embed_dim"] == 40
    diff = json.loads(dvc("metrics", "diff", "--json", cwd=project))
    new = diff[str(REL.metrics("mnv3", "logreg"))]["test.accuracy"]
    assert new["old"] is None and 0.0 <= new["new"] <= 1.0
    assert "mnv3" in ArtifactPaths(project / "artifacts").report.read_text()
