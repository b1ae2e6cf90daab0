"""The bundled demo data is what data/'s scripts make from the full Fashion-MNIST (seed 0), as
data/README.md says. Needs the system dataset package (`make dataset`), hence `slow`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"


def _pixels(root: Path) -> dict[str, np.ndarray]:
    """{relative path: decoded pixels} of every PNG under root (PNG bytes may differ by Pillow)."""
    return {p.relative_to(root).as_posix(): np.asarray(Image.open(p))
            for p in sorted(root.rglob("*.png"))}


def _remake(script: str, out: Path) -> None:
    r = subprocess.run([sys.executable, str(DATA / script), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _assert_same_images(made: Path, bundled: Path) -> None:
    want, got = _pixels(bundled), _pixels(made)
    assert sorted(got) == sorted(want)
    different = [name for name in want if not np.array_equal(got[name], want[name])]
    assert not different, different[:5]


@pytest.mark.slow
def test_bundled_demo_is_remade_by_its_script(tmp_path):
    _remake("make_fashion_mnist_demo.py", tmp_path / "demo")
    _assert_same_images(tmp_path / "demo", DATA / "fashion-mnist-demo")
    assert len(list((tmp_path / "demo").rglob("*.png"))) == 1800


@pytest.mark.slow
def test_bundled_mosaics_are_remade_by_their_script(tmp_path):
    _remake("make_fashion_mnist_mosaics.py", tmp_path / "mosaic")
    _assert_same_images(tmp_path / "mosaic", DATA / "fashion-mnist-mosaic")
    assert len(list((tmp_path / "mosaic").rglob("*.png"))) == 700
    manifest = (tmp_path / "mosaic" / "manifest.csv").read_text()
    assert manifest == (DATA / "fashion-mnist-mosaic" / "manifest.csv").read_text()
