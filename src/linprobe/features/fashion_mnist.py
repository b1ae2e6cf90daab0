"""Fashion-MNIST in its original idx files (Debian: `apt-get install dataset-fashion-mnist`).

Used by the scripts that build the bundled demo data, by the benchmarks and by tests that need
real images beyond the bundled subset. numpy only.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES: tuple[str, ...] = ("tshirt_top", "trouser", "pullover", "dress", "coat",
                            "sandal", "shirt", "sneaker", "bag", "ankle_boot")
_FILES = {"train": "train", "test": "t10k"}


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (gzipped or not) as a read-only uint8 array: images (N, 28, 28), labels (N,)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


# A process cache is right here: the idx files belong to a system package (not user data that
# changes between calls) and decompressing 70,000 images costs time in every test and benchmark.
# Both arrays are read-only, so no caller can change what the next one gets.
@lru_cache(maxsize=4)
def load_split(split: str, root: str | Path = DEFAULT_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of the original 'train' or 'test' split,
    both read-only (shared between callers)."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    images = root / f"{_FILES[split]}-images-idx3-ubyte.gz"
    labels = root / f"{_FILES[split]}-labels-idx1-ubyte.gz"
    missing = [str(p) for p in (images, labels) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"Fashion-MNIST files {missing} not found: run `apt-get install "
                                f"dataset-fashion-mnist`, or pass the folder holding them")
    label_array = read_idx(labels).astype(np.int64)
    label_array.setflags(write=False)
    return read_idx(images), label_array


def load_all(root: str | Path = DEFAULT_ROOT) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels), as :func:`load_split` gives them."""
    return (*load_split("train", root), *load_split("test", root))
