"""Non-square images: crop / pad / stretch on real pixels, the crop-loss measure and its warning,
and the mode in the recorded preprocessing, the resume key and the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torchvision.transforms.v2.functional as F
from PIL import Image

from linprobe.features.backbones.preprocess import RESIZE_MODES, Preprocess
from linprobe.features.croploss import (CUT_KEEP, WARN_SHARE, crop_loss, crop_loss_summary,
                                        crop_warning, read_sizes, sample_paths)
from linprobe.features.extract import extract_embeddings
from linprobe.features.loader import DecodedBatches, to_input
from linprobe.features.store import read_embeddings
from tests.features.imagedata import fashion_mnist

R18 = "torchvision:resnet18:none"
PRE = Preprocess(64, 56, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")


def wide_strip(left: int, right: int) -> np.ndarray:
    """(28, 84, 3) uint8: Fashion-MNIST item ``left`` in the left cell, ``right`` in the right
    cell, the middle cell empty (black): only a crop-free mode can see either item."""
    images, _ = fashion_mnist()
    canvas = np.zeros((28, 84), np.uint8)
    canvas[:, :28], canvas[:, 56:] = images[left], images[right]
    return np.repeat(canvas[:, :, None], 3, axis=2)


def write_wide_folder(root: Path, per_class: int = 4) -> Path:
    """root/<class>/NNN.png: 84x28 strips whose class is the item at both ends; the middle cell
    holds a bag (class 8) whatever the class, which is all a centre crop sees."""
    images, labels = fashion_mnist()
    bags = np.flatnonzero(labels == 8)
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            strip = wide_strip(i, i)
            strip[:, 28:56] = images[bags[3 * k + c], :, :, None]
            Image.fromarray(strip).save(root / f"c{c}" / f"{k:03d}.png")
    return root


def test_pad_keeps_both_end_objects_crop_cuts_them():
    strip = wide_strip(0, 1)
    cropped = to_input(strip, PRE.resize, PRE.crop, mode="crop", fill=PRE.pad_colour).numpy()
    padded = to_input(strip, PRE.resize, PRE.crop, mode="pad", fill=PRE.pad_colour).numpy()
    assert cropped.shape == padded.shape == (56, 56, 3)
    assert cropped.max() == 0  # only the empty middle cell survives the crop
    # Pad: 84x28 -> 56x19 content in rows 18..36; each end third holds its item's pixels.
    rows = padded[18:37]
    left, right = rows[:, :18], rows[:, 38:]
    assert left.max() > 100 and right.max() > 100
    # Above and below the content: the letterbox colour, which normalises to zero.
    assert (padded[:18] == PRE.pad_colour).all() and (padded[37:] == PRE.pad_colour).all()
    zero = (padded[0, 0] / 255.0 - np.array(PRE.mean)) / np.array(PRE.std)
    assert np.abs(zero).max() < 0.5 / 255 / min(PRE.std)


def test_stretch_is_a_plain_square_resize():
    strip = wide_strip(0, 1)
    got = to_input(strip, PRE.resize, PRE.crop, mode="stretch")
    import torch

    want = F.resize(torch.from_numpy(strip).permute(2, 0, 1), [56, 56], antialias=True)
    assert torch.equal(got, want.permute(1, 2, 0))


@pytest.mark.parametrize("size", [(1, 500), (500, 1), (1, 1), (3, 2)])
@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_extreme_aspect_ratios_give_full_inputs(size, mode):
    image = np.full((size[1], size[0], 3), 77, np.uint8)
    x = to_input(image, PRE.resize, PRE.crop, mode=mode, fill=PRE.pad_colour)
    assert tuple(x.shape) == (56, 56, 3)
    assert (x.numpy() == 77).any()  # the image itself is somewhere in the input


@pytest.mark.parametrize("size", [(2000, 7), (7, 2000), (5000, 1)])
def test_crop_of_a_strip_trims_first_with_the_same_result(size, monkeypatch):
    """Strips are trimmed to their centre before the resize (a 1 x 100,000 px strip would
    otherwise become 128 x 12.8M px); on a smooth strip the result equals the full resize."""
    import linprobe.features.loader as loader

    ramp = np.linspace(0, 255, max(size)).astype(np.uint8)
    image = np.ascontiguousarray(np.broadcast_to(
        (ramp[None, :] if size[0] > size[1] else ramp[:, None])[..., None], (size[1], size[0], 3)))
    huge = np.zeros((1, 100_000, 3), np.uint8)
    huge[:, 50_000] = 255  # the centre pixel must survive the trim
    assert to_input(huge, 128, 112).max() > 0
    trimmed = to_input(image, 128, 112)
    monkeypatch.setattr(loader, "_STRIP_RATIO", 10**9)
    assert (trimmed.int() - to_input(image, 128, 112).int()).abs().max() <= 1


def test_decoded_batches_follow_the_mode(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(wide_strip(0, 1)).save(path)
    for mode, end_visible in (("crop", False), ("pad", True), ("stretch", True)):
        pre = Preprocess(64, 56, PRE.mean, PRE.std, "bilinear", resize_mode=mode)
        batch, errors = DecodedBatches([path], 1, pre)[0]
        assert errors == [""]
        assert (batch[0, :, :10].max() > 100) == end_visible, mode


def test_preprocess_records_the_mode():
    pad = Preprocess(64, 56, PRE.mean, PRE.std, "bilinear", resize_mode="pad")
    assert pad.to_dict()["resize_mode"] == "pad" and Preprocess.from_dict(pad.to_dict()) == pad
    old = {k: v for k, v in PRE.to_dict().items() if k != "resize_mode"}
    assert Preprocess.from_dict(old).resize_mode == "crop"  # files from before the modes
    assert PRE.pad_colour == (124, 116, 104)  # round(mean * 255)
    with pytest.raises(ValueError, match=r"'resize_mode' parameter of Preprocess must be one of"):
        Preprocess(64, 56, PRE.mean, PRE.std, "bilinear", resize_mode="letterbox")


def test_crop_loss_values():
    # resize == crop: a 3:1 strip keeps 1/3, a square loses nothing; (w, h) order is irrelevant.
    np.testing.assert_allclose(crop_loss([(84, 28), (28, 84), (50, 50)], 56, 56),
                               [2 / 3, 2 / 3, 0.0])
    # resize > crop: the weights' border trim adds to it.
    np.testing.assert_allclose(crop_loss([(50, 50), (84, 28)], 256, 224),
                               [1 - (224 / 256) ** 2, 1 - (224 / 256) ** 2 / 3])


def test_warning_for_wide_images_only():
    wide = crop_loss_summary([(84, 28)] * 9 + [(28, 28)] * 91, 256, 224)
    assert wide["share_cut"] == 0.09 and not wide["notable"]  # under WARN_SHARE
    wide = crop_loss_summary([(84, 28)] * 10 + [(28, 28)] * 90, 256, 224)
    assert wide["share_cut"] == WARN_SHARE and wide["notable"]
    assert "extract.resize: pad" in crop_warning(wide, "crop")
    assert crop_warning(wide, "pad") is None and crop_warning(wide, "stretch") is None
    # Square images and the photo ratios the weights were evaluated on (4:3, 3:2) never count.
    for size in [(28, 28), (640, 480), (600, 400)]:
        for resize, crop in [(256, 224), (224, 224), (128, 112)]:
            s = crop_loss_summary([size] * 20, resize, crop)
            assert s["share_cut"] == 0 and crop_warning(s, "crop") is None, (size, resize)
    # 16:9 does: the crop keeps 56% < CUT_KEEP of a square image's share.
    assert crop_loss_summary([(1920, 1080)], 224, 224)["share_cut"] == 1.0 and CUT_KEEP == 0.6
    assert crop_loss_summary([], 256, 224)["mean"] is None


def test_header_sizes_without_decoding(tmp_path):
    Image.fromarray(wide_strip(0, 1)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(tmp_path / "b.jpg")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # truncated: header still readable
    (tmp_path / "text.jpg").write_text("not an image")
    paths = [tmp_path / n for n in ("a.png", "b.jpg", "cut.png", "text.jpg", "missing.png")]
    assert read_sizes(paths) == [(84, 28), (30, 10), (84, 28)]
    many = [Path(f"{i}.png") for i in range(101)]
    assert sample_paths(many, 11) == many[::10] and sample_paths(many[:5], 11) == many[:5]


def test_extract_records_mode_and_crop_loss_and_warns(tmp_path, capfd):
    data = write_wide_folder(tmp_path / "wide")
    crop = read_embeddings(extract_embeddings(R18, data, tmp_path / "crop.h5", image_size=32,
                                              batch_size=8, num_workers=0, progress=False))
    err = capfd.readouterr().err
    assert "linprobe: warning: the centre crop discards" in err and "extract.resize: pad" in err
    assert crop.attrs["preprocess"]["resize_mode"] == "crop"
    assert crop.attrs["crop_loss"]["share_cut"] == 1.0 and crop.attrs["crop_loss"]["measured"] == 12
    pad = read_embeddings(extract_embeddings(R18, data, tmp_path / "pad.h5", image_size=32,
                                             resize="pad", batch_size=8, num_workers=0,
                                             progress=False))
    assert "warning" not in capfd.readouterr().err
    assert pad.attrs["preprocess"]["resize_mode"] == "pad" and pad.attrs["crop_loss"]["notable"]
    assert np.isfinite(pad.embeddings).all()
    assert not np.allclose(pad.embeddings, crop.embeddings)
    with pytest.raises(ValueError, match=r"'resize' parameter must be one of \['crop', 'pad', "):
        extract_embeddings(R18, data, tmp_path / "x.h5", resize="fit")
