"""features/fashion_mnist.py: the idx reader and its shared process cache, on small idx files
written here (the default test run needs no system dataset package)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from linprobe.features.fashion_mnist import load_split, read_idx


def write_idx(path: Path, array: np.ndarray) -> Path:
    """``array`` (uint8) as a gzipped idx file: magic (0, 0, 8 = ubyte, ndim), big-endian dims."""
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + np.ascontiguousarray(array, np.uint8).tobytes())
    return path


@pytest.fixture
def idx_root(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 3], np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    return tmp_path, images, labels


def test_idx_files_read_back(idx_root):
    root, images, labels = idx_root
    np.testing.assert_array_equal(read_idx(root / "t10k-images-idx3-ubyte.gz"), images)
    got_images, got_labels = load_split("test", root)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.int64 and got_labels.tolist() == labels.tolist()


def test_fashion_mnist_cache_cannot_be_changed_by_a_caller(idx_root):
    """load_split's process cache is shared: its arrays are read-only."""
    root = idx_root[0]
    images, labels = load_split("test", root)
    for array in (images, labels):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    assert load_split("test", root)[1] is labels


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_split("train", tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_split("val", tmp_path)
