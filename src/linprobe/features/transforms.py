"""Image preprocessing built from a backbone's :class:`Preprocess`."""

from __future__ import annotations

from typing import Callable

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from linprobe.features.backbones.preprocess import Preprocess

_MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}
# Transparent pixels are composited onto white (the usual background of cut-out photos);
# dropping alpha instead would expose whatever colour the encoder left under them.
BACKGROUND = (255, 255, 255)


def to_rgb(img: PIL.Image.Image) -> PIL.Image.Image:
    """Any PIL image -> 8-bit RGB, upright.

    EXIF orientation applied; grayscale/CMYK/YCbCr converted; 16/32-bit integer images scaled
    from their 16-bit range (not clipped at 255); float images taken as 0..1 when they fit, else
    0..255; alpha (RGBA, LA, PA, palette transparency) composited onto BACKGROUND.
    """
    img = PIL.ImageOps.exif_transpose(img)
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit_gray(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = PIL.Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _to_8bit_gray(img: PIL.Image.Image) -> PIL.Image.Image:
    """16/32-bit integer or float grayscale -> mode 'L' (PIL's own convert clips at 255)."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0 if arr.size and arr.max() > 255 else 1.0
    return PIL.Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), mode="L")


class ToRGB(torch.nn.Module):
    """PIL image -> RGB PIL image (:func:`to_rgb`); a (C, H, W) uint8 tensor -> 3 channels."""

    def forward(self, img):  # noqa: D102 - see class docstring
        if isinstance(img, PIL.Image.Image):
            return to_rgb(img)
        if isinstance(img, torch.Tensor) and img.ndim == 3:
            if img.shape[0] == 1:
                return img.expand(3, -1, -1)
            if img.shape[0] == 4:
                return img[:3]  # decoded tensors: alpha already dropped by the decoder's choice
        return img


def build_transform(pre: Preprocess) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """PIL image (any mode) or (C, H, W) uint8 tensor -> (3, crop, crop) float32, normalised.

    Resize on the uint8 tensor (faster than on PIL, antialiased like PIL), then crop, then
    convert to float once: the float work is done on the small cropped image only.
    """
    return v2.Compose(
        [
            ToRGB(),
            v2.PILToTensor(),
            v2.Resize(pre.resize, interpolation=_MODES[pre.interpolation], antialias=True),
            v2.CenterCrop(pre.crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(pre.mean), std=list(pre.std)),
        ]
    )
