"""Robust image decoding: any file Pillow reads -> an RGB uint8 array at the backbone's input size.

Handles EXIF orientation, grayscale / CMYK / 16-bit / palette / alpha images (alpha is composited
on white), refuses decompression bombs, and decodes JPEGs much larger than the target at a reduced
scale (``Image.draft``), which is what keeps camera-size photos cheap.
This module never imports torch: it runs inside DataLoader workers and in plain scripts alike.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Pillow resampling filters by the names torchvision / timm use.
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_16BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageDecodeError(ValueError):
    """An image file could not be turned into pixels; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; alpha is composited on white, 16-bit scaled to 8-bit."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode in _16BIT_MODES or im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        # 16-bit data spans 0..65535; float images are taken as 0..1 intensities.
        scale = 255.0 if im.mode == "F" else 255.0 / 65535.0
        arr8 = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # L, 1, P (opaque), CMYK, YCbCr, LAB, HSV: Pillow's own conversions are correct.
    return im.convert("RGB")


def open_rgb(path: str | Path, *, min_short_side: int | None = None) -> Image.Image:
    """Open ``path`` as an upright RGB image.

    ``min_short_side``: the smallest short side the caller needs; JPEGs at least twice that size
    are decoded at 1/2, 1/4 or 1/8 scale (never below it), which is several times faster.
    Raises :class:`ImageDecodeError` naming the file and the reason (unreadable, truncated,
    decompression bomb over ``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if min_short_side and im.format == "JPEG":
                    w, h = im.size
                    f = min_short_side / min(w, h)
                    im.draft(None, (math.ceil(w * f), math.ceil(h * f)))
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            path,
            f"refused as a possible decompression bomb ({exc}); if the file is genuine, raise "
            "PIL.Image.MAX_IMAGE_PIXELS or downscale it",
        ) from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError(path, "file not found") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(path, "not an image format Pillow can identify") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Truncated / corrupt data surfaces as OSError (and rarely SyntaxError) from load().
        raise ImageDecodeError(path, f"corrupt or truncated image data ({exc})") from exc


def resize_center_crop(
    im: Image.Image, resize: int, crop: int, interpolation: str = "bilinear"
) -> np.ndarray:
    """Resize the short side to ``resize`` then center-crop ``crop`` x ``crop``, as torchvision's
    ``Resize(resize)`` + ``CenterCrop(crop)`` do (zero padding if the crop is larger).

    Returns an (crop, crop, 3) uint8 array.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}"
        )
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resize * long / short)
    size = (resize, new_long) if w <= h else (new_long, resize)
    if size != im.size:
        # reducing_gap first box-reduces by an integer factor: same result to the eye, far faster
        # for large inputs (Pillow docs: 3.0 is indistinguishable from fair resampling).
        im = im.resize(size, INTERPOLATIONS[interpolation], reducing_gap=3.0)
    arr = np.asarray(im)
    h2, w2 = arr.shape[:2]
    if h2 < crop or w2 < crop:
        padded = np.zeros((max(h2, crop), max(w2, crop), 3), np.uint8)
        top, left = (padded.shape[0] - h2) // 2, (padded.shape[1] - w2) // 2
        padded[top : top + h2, left : left + w2] = arr
        arr, h2, w2 = padded, padded.shape[0], padded.shape[1]
    top = int(round((h2 - crop) / 2.0))
    left = int(round((w2 - crop) / 2.0))
    # A copy: np.asarray(PIL image) is read-only, and torch wants writable memory.
    return np.array(arr[top : top + crop, left : left + crop], copy=True)


def load_image(
    path: str | Path, resize: int, crop: int, interpolation: str = "bilinear"
) -> np.ndarray:
    """Decode ``path`` and return the backbone input as a (crop, crop, 3) uint8 array."""
    im = open_rgb(path, min_short_side=resize)
    return resize_center_crop(im, resize, crop, interpolation)
