"""Image preprocessing built from a backbone's :class:`Preprocess`."""

from __future__ import annotations

from typing import Callable

import PIL.Image
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from linprobe.features.backbones.preprocess import Preprocess

_MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def build_transform(pre: Preprocess) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """PIL image (any mode) -> (3, crop, crop) float32 tensor, normalised.

    Resize on the uint8 tensor (faster than on PIL, and antialiased like PIL), then crop, then
    convert to float once: the float work is done on the small cropped image only.
    """
    return v2.Compose(
        [
            _ToRGB(),
            v2.PILToTensor(),
            v2.Resize(pre.resize, interpolation=_MODES[pre.interpolation], antialias=True),
            v2.CenterCrop(pre.crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(pre.mean), std=list(pre.std)),
        ]
    )


class _ToRGB(torch.nn.Module):
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16 ...) to RGB; non-PIL input passes through."""

    def forward(self, img):  # noqa: D102 - trivial
        if isinstance(img, PIL.Image.Image) and img.mode != "RGB":
            return img.convert("RGB")
        return img
