"""Shared report fixtures: artifacts made once per session by the real extract and train
(see realruns.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from linprobe.reports.build import build_report
from tests.reports.realruns import build_artifacts, build_multilabel_artifacts

EVIL = "<script>alert(1)</script>"
CLASSES = ["T-shirt/top", "Trouser", EVIL, "Dress", "Coat & co"]
BROKEN = "<b>broken<i>.png"  # an unreadable image; its name is user data in the report


@pytest.fixture(scope="session")
def multiclass_artifacts(tmp_path_factory) -> Path:
    """artifacts/ for 2 backbones x 2 probes on 5 demo classes (one named like XSS), with one
    unreadable image that extraction skipped."""
    return build_artifacts(tmp_path_factory.mktemp("mc"), CLASSES, broken=BROKEN)


@pytest.fixture(scope="session")
def multilabel_artifacts(tmp_path_factory) -> Path:
    """artifacts/ for 1 backbone x ovr_logreg on the bundled multi-label mosaics."""
    return build_multilabel_artifacts(tmp_path_factory.mktemp("ml"))


@pytest.fixture(scope="session")
def report(multiclass_artifacts, tmp_path_factory) -> tuple[Path, str]:
    """(path, html) of the report built from multiclass_artifacts, with a params file."""
    params = tmp_path_factory.mktemp("params") / "params.yaml"
    params.write_text("backbones:\n  mnv3: torchvision:mobilenet_v3_small:none\n"
                      "probes: [logreg, knn]\n")
    out = build_report(multiclass_artifacts, multiclass_artifacts.parent / "report" / "index.html",
                       params_file=params)
    return out, out.read_text(encoding="utf-8")
