"""Robust decoding: orientation, colour modes, bit depth, alpha, bombs, corrupt files, draft."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from linprobe.features.images import ImageDecodeError, open_rgb
from linprobe.features.loader import to_input
from tests.features.imagedata import photo, write_photo


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_exif_orientation_is_applied(tmp_path):
    plain = write_photo(tmp_path / "plain.png", (64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored landscape, shown portrait
    rotated = tmp_path / "rot.jpg"
    Image.open(plain).save(rotated, exif=exif, quality=95)
    im = open_rgb(rotated)
    assert im.size == (48, 64)
    expected = np.asarray(Image.open(plain).transpose(Image.Transpose.ROTATE_270))
    assert _mad(np.asarray(im), expected) < 4


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1"])
def test_color_modes_become_rgb(tmp_path, mode):
    src = Image.fromarray(photo()).resize((64, 48))
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    src.convert(mode).save(path, quality=95)  # quality only affects the JPEG (CMYK) case
    im = open_rgb(path)
    assert im.mode == "RGB" and im.size == (64, 48)
    expected = np.asarray(src.convert(mode).convert("RGB"))
    assert _mad(np.asarray(im), expected) < (3 if mode == "CMYK" else 0.01)
    if mode == "L":
        arr = np.asarray(im)
        assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def test_16bit_grayscale_scaled_to_8bit(tmp_path):
    gray8 = np.asarray(Image.fromarray(photo()).convert("L").resize((40, 30)))
    gray16 = gray8.astype(np.uint16) * 257  # 255 -> 65535
    path = tmp_path / "deep.png"
    Image.fromarray(gray16).save(path)
    assert Image.open(path).mode.startswith("I")
    arr = np.asarray(open_rgb(path))
    assert np.array_equal(arr[..., 0], gray8) and np.array_equal(arr[..., 2], gray8)


@pytest.mark.parametrize(
    "mode, value, expected",
    [("I", 65535, 255), ("I", 32896, 128), ("F", 0.5, 128), ("F", 1.0, 255)],
)
def test_32bit_int_and_float_images(tmp_path, mode, value, expected):
    """32-bit integer TIFFs hold 16-bit data (scaled, not clipped at 255); float ones 0..1."""
    path = tmp_path / "deep.tif"
    Image.new(mode, (5, 4), value).save(path)
    arr = np.asarray(open_rgb(path))
    assert arr.shape == (4, 5, 3) and (arr == expected).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(tmp_path, mode):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 200  # reddish, fully transparent on the left half, opaque on the right
    rgba[:, 10:, 3] = 255
    im = Image.fromarray(rgba, "RGBA")
    if mode == "P":
        im = im.convert("P")
        im.info["transparency"] = im.getpixel((0, 0))
    else:
        im = im.convert(mode)
    im.save(tmp_path / "a.png")
    arr = np.asarray(open_rgb(tmp_path / "a.png"))
    assert (arr[:, :10] == 255).all()
    assert (arr[:, 10:] != 255).any()


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    path = write_photo(tmp_path / "big.png", (200, 150))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # 30000 px is > 2x: an error
    with pytest.raises(ImageDecodeError, match=r"big\.png.*decompression bomb"):
        open_rgb(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000)  # between 1x and 2x: only a warning
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        open_rgb(path)


def test_corrupt_and_non_images_name_the_file(tmp_path):
    good = write_photo(tmp_path / "good.jpg", (64, 48)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg: corrupt or truncated"):
        open_rgb(tmp_path / "cut.jpg")
    with pytest.raises(ImageDecodeError, match=r"notes\.png: not an image format"):
        open_rgb(tmp_path / "notes.png")
    with pytest.raises(ImageDecodeError, match=r"gone\.png: file not found"):
        open_rgb(tmp_path / "gone.png")


def test_to_input_matches_torchvision_pil_resize_and_crop():
    im = Image.fromarray(photo()).resize((90, 60))
    for image, interp in ((im, "bilinear"), (im.transpose(Image.Transpose.ROTATE_90), "bicubic")):
        mode = T.InterpolationMode(interp)
        ref = np.asarray(T.Compose([T.Resize(40, mode), T.CenterCrop(32)])(image))
        x = to_input(np.array(image), 40, 32, interp)
        assert x.shape == (32, 32, 3) and x.dtype == torch.uint8
        # Same geometry as PIL; antialiased tensor resampling differs by rounding only.
        assert _mad(x.numpy(), ref) < 1.0


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_large_images_shrink_on_decode_close_to_full_decode(tmp_path, fmt):
    path = write_photo(tmp_path / f"cam.{fmt}", (1280, 856), quality=90)
    fast_im = open_rgb(path, min_short_side=64)
    assert 64 <= min(fast_im.size) <= 856 // 4  # decoded (jpg 1/8) or box-reduced (png 1/6)
    fast = to_input(np.array(fast_im), 64, 56)
    full = to_input(np.array(Image.open(path).convert("RGB")), 64, 56)
    assert _mad(fast.numpy(), full.numpy()) < 3
