"""Helpers that write small embeddings files in the extractor's HDF5 layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from linprobe.features.store import SPLIT_CODES, encode_attr
from tests.features.imagedata import demo_split

FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot"]


def write_h5(path: Path, X: np.ndarray, y: np.ndarray, split: list[str] | np.ndarray,
             class_names: list[str], *, task: str | None = None, ids=None,
             backbone: str = "test:synthetic") -> Path:
    """Write X (N, D), labels y (N,) or (N, C), split names (N,) as an embeddings file."""
    task = task or ("multilabel" if np.ndim(y) == 2 else "multiclass")
    n = len(X)
    ids = ids if ids is not None else [f"{s}/{i:05d}.png" for i, s in enumerate(split)]
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=np.asarray(X, np.float32), chunks=True)
        f.create_dataset("ids", data=np.asarray(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("labels", data=np.asarray(y, np.uint8 if task == "multilabel" else np.int64))
        f.create_dataset("split", data=np.array([SPLIT_CODES[s] for s in split], np.uint8))
        for k, v in {"backbone": backbone, "class_names": list(class_names), "task": task,
                     "embed_dim": int(X.shape[1]), "num_samples": n}.items():
            f.attrs[k] = encode_attr(v)
    return path


def blobs(n_per_class: int, n_classes: int, dim: int, sep: float, seed: int = 0):
    """Gaussian blobs: X (n_classes * n_per_class, dim) float32 and y (n,) int64."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)) * sep
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = centers[y] + rng.normal(size=(len(y), dim))
    return X.astype(np.float32), y


def split_names(y: np.ndarray, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> np.ndarray:
    """Per-class train/val/test assignment, (n,) of split names."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), dtype=object)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a = int(round(fractions[0] * len(idx)))
        b = a + int(round(fractions[1] * len(idx)))
        out[idx[:a]], out[idx[a:b]], out[idx[b:]] = "train", "val", "test"
    return out


@pytest.fixture(scope="session")
def fmnist_small(tmp_path_factory) -> Path:
    """Real Fashion-MNIST pixels (downsampled 14x14 = 196-d) as embeddings, from the bundled
    demo: 60 train, 20 val and 30 test images per class, drawn from the demo's own splits."""
    rng = np.random.default_rng(0)
    parts = []
    for split, per_class in (("train", 60), ("val", 20), ("test", 30)):
        images, labels = demo_split(split)
        rows = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                               for c in range(10)])
        parts.append((images[rows], labels[rows], [split] * len(rows)))
    X = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    X = X.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(X), -1)
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    split = np.array([s for p in parts for s in p[2]], dtype=object)
    ids = [f"{s}/{i:05d}.png" for i, s in enumerate(split)]
    path = tmp_path_factory.mktemp("fmnist") / "pixels14.h5"
    return write_h5(path, X, y, split, FMNIST_CLASSES, ids=ids, backbone="raw:pixels14")


@pytest.fixture(autouse=True, scope="module")
def _single_blas_thread():
    """One BLAS thread: on the shared 2-core CI box OpenBLAS worker threads spin-wait against
    other processes and made a 600 x 196 logistic fit ~100x slower (measured 6 s vs 0.06 s).
    Per module, so the limit ends with the models tests instead of holding for the rest of the
    session (a session fixture here stayed set for whatever package ran next)."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield
