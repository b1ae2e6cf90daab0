"""The bad-image corpus (issue 9, item 11), generated: files that break naive image loaders.

``UNREADABLE``: name -> writer of a file no decoder can turn into pixels (extract must stop with
the file named, or skip it). ``READABLE``: name -> writer returning the *expected* upright RGB
pixels of an odd but valid file (extract must decode it to exactly those, or nearly for JPEG).
Every writer takes the target path (whose suffix it keeps) and writes small files (<= 48 px).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from tests.features.imagedata import photo


def picture(w: int = 48, h: int = 32, seed: int = 0) -> Image.Image:
    """A small RGB crop of the sample photo (distinct per ``seed``)."""
    full = Image.fromarray(photo())
    box = (40 * seed, 30 * seed, 40 * seed + 4 * w, 30 * seed + 4 * h)
    return full.crop(box).resize((w, h), Image.Resampling.BILINEAR)


def blocks(w: int = 48, h: int = 32, seed: int = 0) -> Image.Image:
    """Flat 8x8 colour blocks (<= 24 colours): survives GIF palettes and JPEG nearly exactly."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (24, 3), dtype=np.uint8)
    idx = rng.integers(0, len(palette), (h // 8, w // 8))
    return Image.fromarray(np.kron(palette[idx], np.ones((8, 8, 1), np.uint8)).astype(np.uint8))


# --- unreadable --------------------------------------------------------------------------------


def truncated_jpeg(path: Path) -> None:
    picture().save(path, format="JPEG", quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def text_as_jpeg(path: Path) -> None:
    path.write_text("<html><body>404 Not Found</body></html>\n")


def decompression_bomb(path: Path) -> None:
    """A ~70-byte PNG whose header declares 100000 x 100000 pixels (10 gigapixels)."""
    Image.new("L", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    ihdr = 8  # after the PNG signature: length (4), b"IHDR" (4), width (4), height (4), ...
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", 100_000, 100_000)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    data[ihdr + 8 + 13 : ihdr + 8 + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


UNREADABLE: dict[str, tuple[str, Callable[[Path], None], str]] = {
    # name: (file name, writer, words the reason must contain)
    "truncated_jpeg": ("truncated.jpg", truncated_jpeg, r"truncated"),
    "zero_bytes": ("empty.jpg", zero_bytes, r"not an image format"),
    "text_as_jpeg": ("page.jpg", text_as_jpeg, r"not an image format"),
    "decompression_bomb": ("bomb.png", decompression_bomb, r"decompression bomb"),
}


# --- readable: each returns the pixels (H, W, 3) uint8 extract must see ------------------------


def cmyk_jpeg(path: Path) -> np.ndarray:
    src = blocks(seed=1)
    src.convert("CMYK").save(path, format="JPEG", quality=100, subsampling=0)
    return np.asarray(src)


def png_16bit(path: Path) -> np.ndarray:
    gray = np.asarray(picture(seed=2).convert("L"), np.uint16)
    Image.fromarray(gray * 257).save(path, format="PNG")  # 0..255 -> 0..65535, mode I;16
    assert Image.open(path).mode.startswith("I")
    return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)


def palette_alpha_png(path: Path) -> np.ndarray:
    """Palette image whose entry 0 is fully transparent (must come out white)."""
    rgb = np.asarray(blocks(seed=3)).copy()
    rgb[:8, :8] = (10, 20, 30)  # the colour made transparent below
    im = Image.fromarray(rgb).quantize(colors=32, method=Image.Quantize.MAXCOVERAGE)
    entry = int(np.asarray(im)[0, 0])
    im.info["transparency"] = entry
    im.save(path, format="PNG", transparency=entry)
    expected = np.asarray(im.convert("RGB")).copy()
    expected[np.asarray(im) == entry] = 255
    return expected


def exif_rotated_jpeg(path: Path) -> np.ndarray:
    """Stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to display)."""
    upright = blocks(32, 48, seed=4)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(path, format="JPEG", quality=100,
                                                      subsampling=0, exif=exif)
    return np.asarray(upright)


def animated_gif(path: Path) -> np.ndarray:
    frames = [blocks(seed=5), blocks(seed=6), blocks(seed=7)]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=100,
                   loop=0)
    assert Image.open(path).n_frames == 3
    return np.asarray(frames[0])  # the first frame is the image


def webp_lossless(path: Path) -> np.ndarray:
    src = picture(seed=8)
    src.save(path, format="WEBP", lossless=True)
    return np.asarray(src)


def tiff(path: Path) -> np.ndarray:
    src = picture(seed=9)
    src.save(path, format="TIFF", compression="tiff_deflate")
    return np.asarray(src)


def multipage_tiff(path: Path) -> np.ndarray:
    pages = [picture(seed=10), picture(seed=11)]
    pages[0].save(path, format="TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(path).n_frames == 2
    return np.asarray(pages[0])


READABLE: dict[str, tuple[str, Callable[[Path], np.ndarray], bool]] = {
    # name: (file name, writer, exact: decoded pixels equal the expected ones bit for bit)
    "cmyk_jpeg": ("cmyk.jpg", cmyk_jpeg, False),
    "png_16bit": ("gray16.png", png_16bit, True),
    "palette_alpha_png": ("palette.png", palette_alpha_png, True),
    "exif_rotated_jpeg": ("rotated.jpg", exif_rotated_jpeg, False),
    "animated_gif": ("animated.gif", animated_gif, True),
    "webp": ("lossless.webp", webp_lossless, True),
    "tiff": ("deflate.tif", tiff, True),
    "multipage_tiff": ("pages.tiff", multipage_tiff, True),
}
