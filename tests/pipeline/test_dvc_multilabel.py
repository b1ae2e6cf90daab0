"""The multi-label demo through DVC: the Makefile's `dvc exp run -S ...` switch, in a temp repo.

A slice of the bundled mosaic manifest (real Fashion-MNIST mosaics) at 32 px keeps it fast.
"""

from __future__ import annotations

import json
import re
import shlex

from linprobe.schema import ArtifactPaths

from tests.models.mosaic import copy_mosaic_slice

from .dvcproject import REPO, dvc, init_project, ran_stages

PER_SPLIT = {"train": 60, "val": 20, "test": 30}


def makefile_switch() -> list[str]:
    """The -S arguments of `make demo-multilabel`, read from the Makefile (one source of truth)."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    return shlex.split(re.search(r"^ML_SWITCH :=(.*)$", text, re.M).group(1))


def test_multilabel_switch_runs_the_pipeline(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    # The switch names the bundled manifest's path; put the slice there.
    switch = makefile_switch()
    manifest = next(a.split("=", 1)[1] for a in switch if a.startswith("data.path="))
    copy_mosaic_slice((root / manifest).parent, PER_SPLIT)
    init_project(root, None, shipped_probes=True)  # the switch edits the shipped probes

    out = dvc("exp", "run", *switch, cwd=root)
    probes = {"ovr_logreg", "ovr_linear_svm"}
    assert ran_stages(out) == ({"check"} | {f"extract@{b}" for b in ("lite0", "resnet18_random")}
                               | {f"train@{b}-{p}" for b in ("lite0", "resnet18_random")
                                  for p in probes} | {"report"}), out
    art = ArtifactPaths(root / "artifacts")
    for b in ("lite0", "resnet18_random"):
        for p in probes:
            m = json.loads(art.metrics(b, p).read_text())
            assert m["task"] == "multilabel" and m["headline"] == "mAP"
            assert m["n"] == PER_SPLIT
            # Chance mAP is the label frequency (~0.3); real features do clearly better.
            assert 0.3 < m["test"]["mAP"] <= 1.0
            assert set(m["per_class"]) == set(m["class_names"])
    html = art.report.read_text()
    assert "mAP" in html and "precision-recall" in html
