"""Real test images for the datasets / store / extraction tests.

Fashion-MNIST items come from the repo's bundled demo (data/fashion-mnist-demo: 100 train, 30 val
and 50 test PNGs per class), so the tests need no system dataset package; photos from
scikit-learn's bundled sample images (china.jpg, flower.jpg). Everything is written small
(16-64 px) to keep tests fast.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from linprobe.features.fashion_mnist import CLASSES as FMNIST_CLASSES

DEMO = Path(__file__).resolve().parents[2] / "data" / "fashion-mnist-demo"
CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "boot")


@lru_cache(maxsize=3)
def demo_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The bundled demo's ``split`` ('train', 'val' or 'test') in the original datasets' order:
    images (n, 28, 28) uint8 and labels (n,) int64 (Fashion-MNIST's class numbers). Read-only,
    since the cache hands the same arrays to every test."""
    files = sorted(DEMO.glob(f"{split}/*/*.png"), key=lambda p: p.name)  # name = original index
    if not files:
        raise FileNotFoundError(f"no PNGs under {DEMO / split}: the bundled demo data is missing")
    images = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    labels = np.array([FMNIST_CLASSES.index(f.parent.name) for f in files], np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The bundled Fashion-MNIST test images (500, 28, 28) uint8 and labels (500,) int64."""
    return demo_split("test")


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
    """scikit-learn's china.jpg as an (427, 640, 3) uint8 array (read-only: cached)."""
    from sklearn.datasets import load_sample_image

    image = load_sample_image("china.jpg")
    image.setflags(write=False)
    return image


def write_photo(path: Path, size: tuple[int, int], **save_kwargs) -> Path:
    """Save the sample photo resized to ``size`` (w, h) at ``path`` (format from the suffix)."""
    im = Image.fromarray(photo()).resize(size, Image.Resampling.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **save_kwargs)
    return path
