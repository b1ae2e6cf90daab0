"""build_transform / to_rgb: every common image mode becomes the right RGB input."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
import torch

from linprobe.features.backbones import Preprocess
from linprobe.features.transforms import build_transform, to_rgb

PRE = Preprocess(40, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")


def test_shape_dtype_and_normalisation():
    out = build_transform(PRE)(PIL.Image.new("L", (60, 30), color=255))  # grayscale, landscape
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.allclose(out, torch.ones_like(out))  # white -> (1 - 0.5) / 0.5


def test_resize_shorter_side_then_centre_crop():
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :20] = 255  # white only in the left quarter: cropped away by a centre crop
    out = build_transform(Preprocess(32, 32, (0, 0, 0), (1, 1, 1), "bicubic"))(PIL.Image.fromarray(arr))
    assert out.shape == (3, 32, 32) and float(out.max()) < 0.05


@pytest.mark.parametrize(
    "mode,value,expected",
    [
        ("I;16", 65535, 255),  # 16-bit white stays white (PIL's convert would clip every value to 255)
        ("I;16", 32896, 128),
        ("I", 1000, 4),  # 32-bit int holding 16-bit data
        ("F", 0.5, 128),  # float 0..1
        ("L", 77, 77),
        ("CMYK", (0, 0, 0, 0), 255),
    ],
)
def test_to_rgb_modes(mode, value, expected):
    img = PIL.Image.new(mode, (4, 4), value)
    rgb = to_rgb(img)
    assert rgb.mode == "RGB"
    assert np.asarray(rgb)[0, 0].tolist() == [expected] * 3


def test_alpha_is_composited_on_white():
    img = PIL.Image.new("RGBA", (2, 1), (0, 0, 0, 0))  # transparent black
    img.putpixel((1, 0), (10, 20, 30, 255))  # opaque pixel keeps its colour
    assert np.asarray(to_rgb(img)).tolist() == [[[255, 255, 255], [10, 20, 30]]]
    pal = PIL.Image.new("P", (1, 1), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    assert np.asarray(to_rgb(pal)).tolist() == [[[255, 255, 255]]]


def test_exif_orientation_is_applied():
    img = PIL.Image.new("RGB", (4, 2), (0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif)
    shown = to_rgb(PIL.Image.open(io.BytesIO(buf.getvalue())))
    assert shown.size == (2, 4)  # upright: portrait
    assert np.asarray(shown)[0, 1].tolist() == [255, 0, 0]  # top-left red pixel moved to top-right


def test_uint8_tensor_input():
    gray = torch.full((1, 50, 40), 255, dtype=torch.uint8)
    out = build_transform(PRE)(gray)
    assert out.shape == (3, 32, 32) and torch.allclose(out, torch.ones_like(out))
