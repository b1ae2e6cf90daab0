"""Robust image decoding: any file Pillow reads -> an upright RGB PIL image.

Handles EXIF orientation, grayscale / CMYK / 16-bit / palette / alpha images (alpha is composited
on white), refuses decompression bombs, and shrinks images much larger than the target cheaply
while decoding (JPEG ``draft``: DCT-domain 1/2, 1/4, 1/8 scaling) or right after (``reduce``: an
integer box filter), which is what keeps camera-size photos cheap. The final antialiased resize is
left to the caller. This module never imports torch.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_16BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageDecodeError(ValueError):
    """An image file could not be turned into pixels; ``path`` and ``reason`` say which and why,
    ``fix`` (optional) what the caller can do about it."""

    def __init__(self, path: str | Path, reason: str, fix: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}" + (f"; {fix}" if fix else ""))


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

    ``min_short_side``: the smallest short side the caller needs; images at least twice that size
    are shrunk by an integer factor on the way in (never below ``min_short_side``): JPEGs decode at
    1/2, 1/4 or 1/8 scale, which is several times faster, other formats are box-reduced. The
    caller's antialiased resize then works on at most ~2x its output size, as PIL's own
    ``reducing_gap`` would.
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
                im = _to_rgb(ImageOps.exif_transpose(im))
                factor = min(im.size) // (2 * min_short_side) if min_short_side else 1
                return im.reduce(factor) if factor > 1 else im
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
