"""Issue 11.5: building a report leaves the process as it found it: matplotlib's backend and
pyplot untouched, and no image cache shared between two builds."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from linprobe.reports.build import build_report
from linprobe.reports.gallery import Thumbnails, thumbnail_uri
from tests.reports.realruns import build_artifacts
from tests.reports.conftest import CLASSES

_BUILD_IN_FRESH_PROCESS = """
import sys
import matplotlib
matplotlib.use("svg")  # what a user (or a notebook) chose before importing linprobe
import linprobe.reports.build
from linprobe.reports import figures
from linprobe.reports.build import build_report
figures.learning_curves_uri([{"label": "a", "k": [1, 2, 4], "mean": [0.1, 0.5, 0.7], "std": [0, 0.1, 0]}])
figures.scatter_uri(__import__("numpy").zeros((3, 2)), [0, 1, 0], ["x", "y"], "t")
figures.ap_bars_uri(["x"], [0.5])
figures.pr_curves_uri({"x": {"precision": [1, 0.5], "recall": [0, 1]}})
build_report(sys.argv[1], sys.argv[2], tsne_max=0)
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
"""


def test_report_keeps_the_matplotlib_backend_and_never_imports_pyplot(multiclass_artifacts, tmp_path):
    out = tmp_path / "r.html"
    subprocess.run([sys.executable, "-c", _BUILD_IN_FRESH_PROCESS, str(multiclass_artifacts), str(out)],
                   check=True)
    assert out.read_text(encoding="utf-8").count("data:image/png;base64,") > 4


def _thumbs(html: str) -> list[str]:
    gallery = html.split("Misclassified test images", 1)[1]
    return [s for s in gallery.split('"') if s.startswith("data:image/png;base64,")]


def test_two_builds_share_no_thumbnail_cache(tmp_path):
    """The images change on disk between two builds in one process: the second report shows
    the new pixels (a process-wide cache would serve the first build's thumbnails)."""
    art = build_artifacts(tmp_path / "p", CLASSES, probes=("logreg",))
    first = _thumbs(build_report(art, tmp_path / "1.html", tsne_max=0).read_text())
    tests = sorted((art.parent / "data" / "img").glob("test-*.png"))
    for png in tests:
        Image.fromarray(np.full((28, 28), 255, np.uint8)).save(png)
    second = _thumbs(build_report(art, tmp_path / "2.html", tsne_max=0).read_text())
    white = thumbnail_uri(str(art.parent / "data"), str(tests[0].relative_to(art.parent / "data")))
    assert first and len(second) == len(first)
    assert white not in first and set(second) == {white}


def test_thumbnails_read_each_file_once_per_object(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    thumbs = Thumbnails()
    black = thumbs.uri(str(tmp_path), "a.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "a.png")
    assert thumbs.uri(str(tmp_path), "a.png") == black  # cached within one build
    assert Thumbnails().uri(str(tmp_path), "a.png") != black  # a new build reads the file again
    assert thumbs.uri(str(tmp_path), "../escape.png") is None
