"""`dvc repro` of the shipped dvc.yaml with `extract.engine: ray`: the extract stage runs its
shards as Ray tasks (a local instance the stage starts) and its one DVC out is still the merged
embeddings file; no shard is left beside it."""

from __future__ import annotations

import os

import pytest
import yaml

from linprobe.features.store import read_attrs
from linprobe.schema import ArtifactPaths

from .dvcproject import copy_slice, dvc, edit_params, init_project, ran_stages, sh

REL = ArtifactPaths("artifacts")


@pytest.mark.slow  # a Ray instance started inside a dvc stage: about a minute on 2 cores
def test_extract_stage_on_ray_has_only_the_merged_file_as_out(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    root = tmp_path / "proj"
    root.mkdir()
    copy_slice(root / "data" / "demo", {"train": 4, "val": 2, "test": 2}, classes=3)
    init_project(root, "data/demo")

    def ray_engine(params: dict) -> None:
        params["extract"]["engine"] = "ray"
        params["backbones"] = {"resnet18_random": {"spec": "torchvision:resnet18:none"}}

    edit_params(root, ray_engine)
    sh("git", "commit", "-qam", "ray engine", cwd=root)
    out = dvc("repro", "extract@resnet18_random", cwd=root)
    assert ran_stages(out) == {"check", "extract@resnet18_random"}
    h5 = root / REL.embeddings("resnet18_random")
    assert read_attrs(h5)["shards"][0]["rows"] == [0, 24]  # written through the Ray engine
    # No shards folder, lock or partial file left (DVC writes the .gitignore).
    assert sorted(os.listdir(h5.parent)) == [".gitignore", h5.name]
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = lock["stages"]["extract@resnet18_random"]["outs"]
    assert [o["path"] for o in outs] == [str(REL.embeddings("resnet18_random"))]
