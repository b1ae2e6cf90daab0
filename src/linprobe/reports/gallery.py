"""Error gallery: embedded thumbnails of the most confident test mistakes of a run."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from linprobe.reports.figures import png_uri
from linprobe.schema import Predictions


def thumbnail_uri(data_root: str, image_id: str, size: int = 64) -> str | None:
    """PNG data URI of ``data_root/image_id`` shrunk to at most size x size; None if unreadable.

    Ids that escape ``data_root`` (absolute, or with ``..``) are refused rather than read, since
    the ids come from an artifact file, not from the user running the report.
    """
    root = Path(data_root).resolve()
    path = (root / image_id).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    try:
        with warnings.catch_warnings():
            # An image that grew past PIL.Image.MAX_IMAGE_PIXELS since extraction (which refuses
            # those) is not decoded here either: one thumbnail must not exhaust memory.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img = img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode)
                # Only shrink: small images (28 px) are embedded as they are and scaled up by
                # CSS (pixelated), which keeps the HTML several times smaller than upscaled PNGs.
                img.thumbnail((size, size), Image.LANCZOS)
                buf = io.BytesIO()
                img.save(buf, format="PNG", optimize=True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        print(f"linprobe: warning: {path}: not drawn in the report's error gallery: refused as a "
              f"possible decompression bomb ({exc})", file=sys.stderr)
        return None
    except (OSError, UnidentifiedImageError):
        return None
    return png_uri(buf.getvalue())


class Thumbnails:
    """Thumbnails of one report build: each image is read once, however many runs show it.

    One object per build (made by ``build_report``, dropped with it), so a later build reads
    the files again and never shows images as they were before they changed on disk.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._uris: dict[tuple[str, str], str | None] = {}

    def uri(self, data_root: str, image_id: str) -> str | None:
        """:func:`thumbnail_uri` of ``data_root/image_id``, read on first use."""
        key = (data_root, image_id)
        if key not in self._uris:
            self._uris[key] = thumbnail_uri(data_root, image_id, self.size)
        return self._uris[key]


def error_gallery(
    preds: Predictions, task: str, data_root: str | None, *, limit: int = 12,
    thumbnails: Thumbnails | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` misclassified test samples, most confident first.

    Each item: {"id", "actual", "predicted", "score" (float|None), "thumb" (data URI|None)}.
    thumbnails: the build's thumbnail cache (None: a new one for this call).
    """
    thumbnails = thumbnails if thumbnails is not None else Thumbnails()
    wrong = np.flatnonzero(preds.wrong(task))
    score = np.nan_to_num(preds.score[wrong], nan=-np.inf)
    order = wrong[np.argsort(-score, kind="stable")][:limit]
    items = []
    for i in order:
        s = preds.score[i]
        items.append({
            "id": str(preds.ids[i]),
            "actual": str(preds.actual[i]),
            "predicted": str(preds.predicted[i]),
            "score": None if np.isnan(s) else float(s),
            "thumb": thumbnails.uri(data_root, str(preds.ids[i])) if data_root else None,
        })
    return items
