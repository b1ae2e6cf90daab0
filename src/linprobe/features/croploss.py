"""How much of each image the centre crop throws away, from image sizes alone.

The weights' evaluation protocol (``resize_mode='crop'``) resizes the short side to ``resize``
and keeps the centre ``crop`` x ``crop`` square. An image of w x h then keeps the fraction
``(crop / resize)**2 * short / long`` of its area. A square image loses only the border trim that
the weights were evaluated with (23% at the common 256/224); a 3:1 strip loses two thirds or
more, and with it whatever was at its ends.

Thresholds (see :func:`crop_loss_summary`): an image counts as *cut* when its crop keeps at most
``CUT_KEEP`` (60%) of what the crop keeps of a square image, i.e. its aspect ratio is 5:3 or
wider (16:9 frames, panoramas, strips; 4:3 and 3:2 photos, the weights' own diet, do not count).
Extraction warns (and suggests ``extract.resize: pad``) when at least ``WARN_SHARE`` (10%) of the
images are cut.

No torch here: ``linprobe check`` calls this on image headers before any model is loaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# The modes of Preprocess.resize_mode / extract.resize (defined here, torch-free, for params.py).
RESIZE_MODES: tuple[str, ...] = ("crop", "pad", "stretch")
CUT_KEEP = 0.6  # an image is cut when the crop keeps <= 60% of what it keeps of a square image
WARN_SHARE = 0.10  # warn when at least this share of the measured images is cut
SAMPLE = 10_000  # header reads at most this many images (evenly spaced) per dataset


def crop_loss(sizes: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """(n, 2) widths and heights -> (n,) fraction of each image's area outside the centre crop
    (short side to ``resize``, then a ``crop`` x ``crop`` square; ``resize >= crop``)."""
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    short, long = sizes.min(axis=1), sizes.max(axis=1)
    return 1.0 - (crop / resize) ** 2 * short / long


def crop_loss_summary(sizes: Iterable[tuple[int, int]], resize: int, crop: int,
                      n_images: int | None = None) -> dict:
    """Summary of :func:`crop_loss` over ``sizes`` ((w, h) pairs) for the HDF5 attrs and reports.

    Keys: ``measured`` (images measured), ``n_images`` (in the dataset; default ``measured``),
    ``mean`` / ``p90`` / ``max`` loss, ``square`` (the loss of a square image: the weights' border
    trim), ``cut_threshold`` (the loss from which an image counts as cut), ``share_cut`` and
    ``notable`` (``share_cut >= WARN_SHARE``). Losses are fractions in [0, 1].
    """
    arr = np.asarray(list(sizes), dtype=np.float64).reshape(-1, 2)
    square = float(1.0 - (crop / resize) ** 2)
    threshold = 1.0 - (1.0 - square) * CUT_KEEP
    loss = crop_loss(arr, resize, crop)
    # Rounded so that the same images give the same attrs whatever the float noise.
    share = float(np.mean(loss >= threshold - 1e-9)) if len(loss) else 0.0
    return {
        "measured": int(len(loss)),
        "n_images": int(len(loss) if n_images is None else n_images),
        "mean": round(float(loss.mean()), 4) if len(loss) else None,
        "p90": round(float(np.quantile(loss, 0.9)), 4) if len(loss) else None,
        "max": round(float(loss.max()), 4) if len(loss) else None,
        "square": round(square, 4),
        "cut_threshold": round(threshold, 4),
        "share_cut": round(share, 4),
        "notable": bool(share >= WARN_SHARE),
    }


def crop_warning(summary: dict, mode: str) -> str | None:
    """The warning to print and show in the report, or None (not notable, or not cropping)."""
    if mode != "crop" or not summary.get("notable"):
        return None
    return (
        f"the centre crop discards at least {summary['cut_threshold']:.0%} of the area of "
        f"{summary['share_cut']:.0%} of the images (mean loss {summary['mean']:.0%}; images 5:3 "
        f"or wider): objects near their edges are cut away. Set `extract.resize: pad` in "
        f"params.yaml (or `--resize pad`) to letterbox whole images instead"
    )


def sample_paths(paths: Sequence[Path], limit: int = SAMPLE) -> list[Path]:
    """``paths`` itself, or ``limit`` evenly spaced ones when there are more (deterministic)."""
    if len(paths) <= limit:
        return list(paths)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]


def read_sizes(paths: Iterable[Path]) -> list[tuple[int, int]]:
    """(w, h) of each readable image from its header only (nothing is decoded); unreadable files
    are left out (extraction reports them itself). EXIF rotation does not change the area
    fractions, so it is ignored."""
    sizes = []
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    w, h = im.size
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue
        if w > 0 and h > 0:
            sizes.append((int(w), int(h)))
    return sizes
