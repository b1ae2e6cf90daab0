"""Hostile inputs for non-square images (issue 9, item 1): bad resize settings, extreme aspect
ratios in every mode, the crop warning, and a resume across modes. Real CLI, real images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from linprobe.features.backbones.preprocess import RESIZE_MODES
from linprobe.features.store import read_embeddings
from tests.features.imagedata import fashion_mnist, write_folder
from tests.hostile.harness import REPO, expect_error, expect_ok

R18 = "torchvision:resnet18:none"
EXTRACT = ("extract", "--backbone", R18, "--image-size", "32", "--batch-size", "4",
           "--device", "cpu")
WARNING = "linprobe: warning: the centre crop discards"


def _wide_folder(root: Path, per_class: int = 3) -> Path:
    """root/<train|test>/<class>/NNN.png: 84x28 strips of three Fashion-MNIST items."""
    images, labels = fashion_mnist()
    for split in ("train", "test"):
        for c in range(2):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            idx = np.flatnonzero(labels == c)
            for k in range(per_class):
                i = idx[k + (per_class if split == "test" else 0)]
                Image.fromarray(np.hstack([images[i]] * 3)).save(folder / f"{k:03d}.png")
    return root


def _extreme_folder(root: Path) -> Path:
    """A 2-class folder of 1x500, 500x1, 1x1, 2x900 and 100000x1 RGB images (and an ordinary
    one). Resized whole, the last would be a 32 x 3.2M px (300 MB) image before the crop."""
    rng = np.random.default_rng(0)
    sizes = [(1, 500), (500, 1), (1, 1), (2, 900), (100_000, 1), (28, 28)]
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for k, (w, h) in enumerate(sizes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{k}.png")
    return root


def _params(tmp_path: Path, data: Path, extract: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(f"data:\n  path: {data}\nextract:\n{extract}\nbackbones:\n  r18:\n"
                    f"    spec: {R18}\nprobes:\n  logreg: {{}}\n")
    return path


@pytest.fixture
def wide(tmp_path: Path) -> Path:
    return _wide_folder(tmp_path / "wide")


@pytest.mark.parametrize("value", ["letterbox", "PAD", "", "crop;touch x"])
def test_bad_resize_value_is_refused(folder, tmp_path, value):
    expect_error([*EXTRACT, "--data", folder, "--out", tmp_path / "e.h5", "--resize", value],
                 [r"--resize", r"invalid choice", r"crop", r"pad", r"stretch"],
                 watch=[folder], cwd=tmp_path)
    assert not list(tmp_path.glob("e.h5*")) and not (tmp_path / "x").exists()


@pytest.mark.parametrize("value, match", [
    ("fit", r"must be one of \['crop', 'pad', 'stretch'\], got 'fit'"),
    ("3", r"must be a string, got 3"),
    ("[pad]", r"must be a string"),
])
def test_bad_extract_resize_in_params_check(folder, tmp_path, value, match):
    params = _params(tmp_path, folder, f"  resize: {value}")
    expect_error(["check", "--params", params], [r"params\.yaml: extract\.resize", match],
                 watch=[folder, params])


def test_bad_extract_resize_in_params_extract(folder, tmp_path):
    """`linprobe extract --params` (what dvc.yaml runs) validates the whole file first."""
    params = _params(tmp_path, folder, "  resize: squash")
    expect_error([*EXTRACT, "--data", folder, "--out", tmp_path / "e.h5", "--params", params,
                  "--name", "r18"], [r"extract\.resize must be one of", r"squash"],
                 watch=[folder, params])
    assert not list(tmp_path.glob("e.h5*"))


@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_extreme_aspect_ratios_in_every_mode(tmp_path, mode):
    data = _extreme_folder(tmp_path / "extreme")
    out = tmp_path / f"{mode}.h5"
    r = expect_ok([*EXTRACT, "--data", data, "--out", out, "--resize", mode, "--val-fraction",
                   "0", "--test-fraction", "0.2"], watch=[data])
    es = read_embeddings(out)
    assert es.embeddings.shape == (12, 512) and np.isfinite(es.embeddings).all()
    assert es.attrs["preprocess"]["resize_mode"] == mode and es.attrs["skipped"] == []
    assert es.attrs["crop_loss"]["measured"] == 12 and es.attrs["crop_loss"]["max"] > 0.99
    # 10 of 12 images are strips: crop warns, the other modes keep whole images and stay quiet.
    assert (WARNING in r.err) == (mode == "crop")


def test_crop_warning_for_wide_set(wide, tmp_path):
    r = expect_ok([*EXTRACT, "--data", wide, "--out", tmp_path / "e.h5"], watch=[wide])
    assert WARNING in r.err and "extract.resize: pad" in r.err and "--resize pad" in r.err
    assert "100% of the images" in r.err
    assert read_embeddings(tmp_path / "e.h5").attrs["crop_loss"]["notable"] is True


def test_no_crop_warning_for_square_set(folder, tmp_path):
    r = expect_ok([*EXTRACT, "--data", folder, "--out", tmp_path / "e.h5"], watch=[folder])
    assert "warning" not in r.err.lower()
    loss = read_embeddings(tmp_path / "e.h5").attrs["crop_loss"]
    assert loss["share_cut"] == 0 and not loss["notable"] and loss["measured"] == 30


def test_pad_colour_is_the_weights_mean(tmp_path):
    """A 90x1 white strip padded into 32x32: row 15 is the strip, every other row is
    round(mean*255)."""
    from dataclasses import replace

    from linprobe.features.backbones import load_backbone
    from linprobe.features.loader import DecodedBatches

    Image.new("RGB", (90, 1), (255, 255, 255)).save(tmp_path / "strip.png")
    for spec in (R18, "lite:efficientnet-lite0"):
        pre = load_backbone(spec, image_size=32).preprocess
        x, errors = DecodedBatches([tmp_path / "strip.png"], 1, replace(pre, resize_mode="pad"))[0]
        colour = tuple(round(m * 255) for m in pre.mean)
        assert errors == [""] and pre.pad_colour == colour
        assert (x[0, 0] == x.new_tensor(colour)).all() and (x[0, -1] == x.new_tensor(colour)).all()
        assert (x[0, 15] == 255).all()  # the strip itself, 32 px wide, 1 px high
        pad = x.new_tensor(colour)
        assert (x[0, 16:] == pad).all() and (x[0, :15] == pad).all()


# The child pauses after each batch write so the parent catches it mid-run (see test_extract).
_CHILD = """
import sys, time
from linprobe.features import store
append = store.EmbeddingWriter.append
def slow_append(self, *args, **kwargs):
    append(self, *args, **kwargs)
    time.sleep(0.2)
store.EmbeddingWriter.append = slow_append
from linprobe.pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_midway(args: list, partial: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, processed = time.monotonic() + 180, 0
    while proc.poll() is None and time.monotonic() < deadline and processed < 8:
        try:
            with h5py.File(partial, "r", locking=False) as f:
                processed = int(f.attrs["processed"])
        except (OSError, KeyError):
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert processed >= 8, "the child finished or failed before it could be killed"


@pytest.mark.parametrize("second", ["pad", "crop"])
def test_resume_with_another_mode_discards_the_partial(tmp_path, second):
    wide = _wide_folder(tmp_path / "wide", per_class=6)  # 24 images: 6 batches of 4
    out = tmp_path / "e.h5"
    partial = out.with_name("e.h5.partial")
    _kill_midway([*EXTRACT, "--data", wide, "--out", out, "--resize", "crop"], partial)
    assert partial.exists() and not out.exists()
    r = expect_ok([*EXTRACT, "--data", wide, "--out", out, "--resize", second], watch=[wide])
    es = read_embeddings(out)
    assert es.attrs["preprocess"]["resize_mode"] == second
    if second == "crop":  # same settings: resumed, not restarted
        assert "resuming" in r.err and es.attrs["resumed_from"] >= 8
    else:
        assert "discarding" in r.err and "another backbone, preprocessing or dataset" in r.err
        assert es.attrs["resumed_from"] == 0 and not partial.exists()


@pytest.mark.parametrize("mode, warns", [("crop", True), ("pad", False)])
def test_check_gives_the_crop_warning_before_any_work(wide, tmp_path, mode, warns):
    params = _params(tmp_path, wide, f"  image_size: 32\n  resize: {mode}")
    r = expect_ok(["check", "--params", params], watch=[wide, params])
    assert (WARNING in r.err) == warns and ("extract.resize: pad" in r.err) == warns
    assert "OK (1 backbones x 1 probes)" in r.out
