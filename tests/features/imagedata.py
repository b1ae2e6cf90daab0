"""Real test images for the datasets / store / extraction tests.

Fashion-MNIST digits come from the Debian package's idx files; photos from scikit-learn's bundled
sample images (china.jpg, flower.jpg). Everything is written small (16-64 px) to keep tests fast.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from linprobe.features.fashion_mnist import load_split

CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "boot")


@lru_cache(maxsize=1)
def fashion_mnist(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """First ``n`` Fashion-MNIST test images (n, 28, 28) uint8 and labels (n,) int64."""
    images, labels = load_split("test")
    return images[:n], labels[:n]


def write_folder(
    root: Path, per_class: int, classes: int = 3, splits: dict[str, int] | None = None
) -> Path:
    """Image folder of real Fashion-MNIST PNGs: root/<class>/NNN.png, or with ``splits``
    ({"train": 4, "test": 2}) root/<split>/<class>/NNN.png. Returns root."""
    images, labels = fashion_mnist()
    used = 0
    layout = splits or {"": per_class}
    for split, count in layout.items():
        for c in range(classes):
            folder = root / split / CLASSES[c] if split else root / CLASSES[c]
            folder.mkdir(parents=True, exist_ok=True)
            idx = np.flatnonzero(labels == c)
            for k in range(count):
                i = idx[(used + k) % len(idx)]
                Image.fromarray(images[i]).save(folder / f"{split or 'img'}{used + k:04d}.png")
        used += layout[split]
    return root


@lru_cache(maxsize=1)
def photo() -> np.ndarray:
    """scikit-learn's china.jpg as an (427, 640, 3) uint8 array."""
    from sklearn.datasets import load_sample_image

    return load_sample_image("china.jpg")


def write_photo(path: Path, size: tuple[int, int], **save_kwargs) -> Path:
    """Save the sample photo resized to ``size`` (w, h) at ``path`` (format from the suffix)."""
    im = Image.fromarray(photo()).resize(size, Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **save_kwargs)
    return path
