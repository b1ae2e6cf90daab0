"""The bad-image corpus through ``linprobe extract`` (issue 9, item 11).

Unreadable files (truncated, zero bytes, text named .jpg, decompression bomb): with
``--on-error fail`` extract exits 2 naming the file and the reason and suggesting
``--on-error skip``; with ``skip`` it exits 0 and lists them in the ``skipped`` attribute.
Odd but valid files (CMYK, 16-bit, palette + alpha, EXIF-rotated, animated GIF, WebP, TIFF,
multi-page TIFF) extract to the embedding of the pixels they should show: each is embedded next
to a lossless PNG of the expected upright RGB pixels, and the two rows must agree.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from linprobe.features.store import read_embeddings
from tests.features.imagedata import write_folder
from tests.hostile.harness import expect_error, expect_ok
from tests.hostile.images import READABLE, UNREADABLE

BACKBONE = "torchvision:resnet18:none"


def extract(data: Path, out: Path, *extra: str) -> list[str]:
    return ["extract", "--backbone", BACKBONE, "--data", data, "--out", out, "--image-size", "32",
            "--batch-size", "8", "--device", "cpu", *extra]


def small_folder(root: Path) -> Path:
    """Two classes (tshirt, trouser) of real Fashion-MNIST PNGs, train 3 / test 2 each."""
    return write_folder(root, per_class=0, classes=2, splits={"train": 3, "test": 2})


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_unreadable_image_fails_naming_the_file(tmp_path, kind):
    name, write, reason = UNREADABLE[kind]
    data = small_folder(tmp_path / "data")
    write(data / "train" / "tshirt" / name)
    out = tmp_path / "e.h5"
    expect_error(extract(data, out),
                 [rf"cannot read image .*train/tshirt/{name}: ", reason, r"--on-error skip"],
                 watch=[data])
    assert not out.exists()


@pytest.fixture(scope="module")
def skipped_run(tmp_path_factory) -> tuple[Path, Path]:
    """One extract with --on-error skip over a folder holding every unreadable file."""
    tmp = tmp_path_factory.mktemp("skip")
    data = small_folder(tmp / "data")
    for name, write, _ in UNREADABLE.values():
        write(data / "train" / "tshirt" / name)
    out = tmp / "e.h5"
    expect_ok(extract(data, out, "--on-error", "skip"), watch=[data])
    return data, out


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_unreadable_image_is_skipped_and_recorded(skipped_run, kind):
    data, out = skipped_run
    name, _, reason = UNREADABLE[kind]
    es = read_embeddings(out)
    bad = f"train/tshirt/{name}"
    assert bad not in set(es.ids)
    skipped = {s["id"]: s["reason"] for s in es.attrs["skipped"]}
    assert set(skipped) == {f"train/tshirt/{n}" for n, _, _ in UNREADABLE.values()}
    assert re.search(reason, skipped[bad]), skipped[bad]
    every = {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()}
    assert sorted(es.ids) == sorted(every - set(skipped)) and np.isfinite(es.embeddings).all()


# Wrong readings a decoder could make: the row must be far closer to the right pixels than to
# these (JPEG files are not bit-exact, so they are checked against a decoy instead of equality).
DECOYS = {
    "cmyk_jpeg": lambda px: 255 - px,  # CMYK taken as inverted RGB
    "exif_rotated_jpeg": lambda px: np.rot90(px),  # orientation tag ignored
}


@pytest.fixture(scope="module")
def readable_run(tmp_path_factory) -> dict[str, np.ndarray]:
    """One extract (--on-error fail) over every odd-but-valid file, each beside a PNG of its
    expected pixels (and a decoy where one is defined); {id: embedding}."""
    tmp = tmp_path_factory.mktemp("readable")
    data = small_folder(tmp / "data")
    for kind, (name, write, _) in READABLE.items():
        expected = write(data / "train" / "tshirt" / name)
        Image.fromarray(expected).save(data / "train" / "trouser" / f"ref_{kind}.png")
        if kind in DECOYS:
            decoy = np.ascontiguousarray(DECOYS[kind](expected))
            Image.fromarray(decoy).save(data / "train" / "trouser" / f"decoy_{kind}.png")
    out = tmp / "e.h5"
    expect_ok(extract(data, out), watch=[data])
    es = read_embeddings(out)
    assert es.attrs["skipped"] == []
    return dict(zip(es.ids, es.embeddings))


@pytest.mark.parametrize("kind", sorted(READABLE))
def test_odd_image_is_decoded_to_the_right_pixels(readable_run, kind):
    name, _, exact = READABLE[kind]
    got = readable_run[f"train/tshirt/{name}"]
    ref = readable_run[f"train/trouser/ref_{kind}.png"]
    if exact:
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    else:
        decoy = readable_run[f"train/trouser/decoy_{kind}.png"]
        assert np.linalg.norm(got - ref) < 0.1 * np.linalg.norm(decoy - ref)
