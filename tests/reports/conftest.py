"""Shared report fixtures: real artifacts built once per session (see artifacts.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from linprobe.reports.build import build_report
from tests.reports.artifacts import write_artifacts

EVIL = "<script>alert(1)</script>"
CLASSES = ["T-shirt/top", "Trouser", EVIL, "Dress", "Coat & co"]
SKIPPED = [{"id": "train/c0/<b>broken</b>.png", "reason": "cannot identify image file"}]


@pytest.fixture(scope="session")
def multiclass_artifacts(tmp_path_factory) -> Path:
    """artifacts/ for 2 backbones x 2 probes on 5 Fashion-MNIST classes (one named like XSS)."""
    return write_artifacts(tmp_path_factory.mktemp("mc"), CLASSES, skipped=SKIPPED)


@pytest.fixture(scope="session")
def report(multiclass_artifacts, tmp_path_factory) -> tuple[Path, str]:
    """(path, html) of the report built from multiclass_artifacts, with a params file."""
    params = tmp_path_factory.mktemp("params") / "params.yaml"
    params.write_text("backbones:\n  pool7: pixels:pool7\nprobes: [logreg, ridge]\n")
    out = build_report(multiclass_artifacts, multiclass_artifacts.parent / "report" / "index.html",
                       params_file=params)
    return out, out.read_text(encoding="utf-8")
