"""Fixtures of the hostile-input suite: small real datasets made fresh for each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.features.imagedata import write_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A 3-class image folder with train/val/test splits of real Fashion-MNIST PNGs."""
    return write_folder(tmp_path / "data", per_class=0, classes=3,
                        splits={"train": 6, "val": 2, "test": 2})
