"""Row-block sources for the streamed probe fit (:mod:`.streaming`).

A source yields ``(X, y)`` blocks, X (b, D) float32 and y (b,) int64 labels, of at most
``chunk_rows`` rows, in the same row order on every pass, so that only one block of the
embeddings matrix is in memory at a time (X may be a reused buffer: valid until the next block):

- :class:`ArrayBlocks`: rows of an in-memory array (tests; the reference for the file source).
- :class:`H5Blocks`: rows of an embeddings file (:mod:`linprobe.features.store` layout) read
  block by block with h5py, optionally only the rows of some splits, optionally only the
  contiguous share of rows of one torch.distributed rank.

Labels and split codes are one value per row (8 + 1 bytes against 4 * D for the row), so a
source reads them whole; only the (N, D) embeddings are streamed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from numbers import Integral
from pathlib import Path

import numpy as np

from linprobe.schema import SPLIT_CODES, SPLITS


def check_chunk_rows(chunk_rows) -> int:
    """``chunk_rows`` as an int >= 1; ValueError naming the parameter otherwise."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, Integral) or chunk_rows < 1:
        raise ValueError(f"The 'chunk_rows' parameter must be an int >= 1 (rows per block read "
                         f"into memory). Got {chunk_rows!r} instead.")
    return int(chunk_rows)


def rows_for_mb(chunk_mb: float, n_features: int) -> int:
    """Rows of float32 (n_features,) embeddings that fit in ``chunk_mb`` MiB (at least 1)."""
    return max(1, int(chunk_mb * 2**20) // (4 * max(n_features, 1)))


def torchrun_world() -> int:
    """WORLD_SIZE as torchrun (or any launcher) sets it; 1 without one. No torch import."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share [start, stop) of n rows among ``world`` ranks."""
    return n * rank // world, n * (rank + 1) // world


class ArrayBlocks:
    """Blocks of rows of X (n, D) and y (n,) in memory (no copy beyond one block)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, chunk_rows: int):
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be (n, D) and y (n,); got {X.shape} and {np.shape(y)}")
        self.X, self.y = X, np.asarray(y)
        self.chunk_rows = check_chunk_rows(chunk_rows)
        self.n_features = X.shape[1]

    def labels(self) -> np.ndarray:
        """(n,) labels of every row the blocks hold, in block order."""
        return self.y

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, len(self.X), self.chunk_rows):
            yield (np.asarray(self.X[i:i + self.chunk_rows], dtype=np.float32),
                   self.y[i:i + self.chunk_rows])


class H5Blocks:
    """Blocks of the rows of ``splits`` in an embeddings file, read ``chunk_rows`` file rows at
    a time (a block holds the rows of those splits among them, so it may be shorter).

    With ``rank``/``world`` only the rank's contiguous share of the file's rows is read
    (:func:`rank_range`); every rank together covers each row once.
    """

    def __init__(self, path: str | Path, chunk_rows: int, splits: Sequence[str] = ("train",),
                 rank: int = 0, world: int = 1):
        import h5py

        self.path = Path(path)
        self.chunk_rows = check_chunk_rows(chunk_rows)
        bad = [s for s in splits if s not in SPLIT_CODES]
        if not splits or bad:
            raise ValueError(f"The 'splits' parameter must list some of {list(SPLITS)}. Got "
                             f"{list(splits)!r} instead.")
        if not self.path.is_file():
            raise FileNotFoundError(f"embeddings file {self.path} does not exist; run "
                                    f"`linprobe extract ... --out {self.path}` first")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [k for k in ("embeddings", "labels", "split") if k not in f]
                if missing:
                    raise ValueError(f"{self.path} is missing datasets {missing}; re-run the "
                                     "extraction")
                emb = f["embeddings"]
                if emb.ndim != 2 or emb.dtype != np.float32:
                    raise ValueError(f"{self.path}: 'embeddings' must be float32 (N, D); got "
                                     f"{emb.dtype} {emb.shape}")
                n, self.n_features = emb.shape
                self.start, self.stop = rank_range(n, rank, world)
                split = f["split"][self.start:self.stop]
                self._labels = f["labels"][self.start:self.stop]
        except OSError as exc:
            raise ValueError(f"{self.path} is not a readable HDF5 embeddings file ({exc}); re-run "
                             "`linprobe extract` to write it again") from None
        if self._labels.ndim != 1:
            raise ValueError(f"{self.path}: streamed probes fit multiclass labels (N,); got "
                             f"labels of shape {self._labels.shape}")
        self.keep = np.isin(split, [SPLIT_CODES[s] for s in splits])
        self.splits = tuple(splits)
        if world == 1 and not self.keep.any():
            raise ValueError(f"{self.path} has no rows in split(s) {list(splits)}; choose splits "
                             f"the file holds (its split codes: "
                             f"{sorted(set(np.unique(split).tolist()))}, 0 train 1 val 2 test)")

    def labels(self) -> np.ndarray:
        """(n,) labels of every row the blocks hold, in block order."""
        return self._labels[self.keep]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Blocks read into two buffers of chunk_rows rows allocated once per pass: a block is
        valid until the next one is read. (A fresh array per block, of a size that varies
        with the rows kept, made glibc's heap grow to several blocks: measured 7x the block.)"""
        import h5py

        buf = np.empty((self.chunk_rows, self.n_features), np.float32)
        kept = np.empty_like(buf)
        with h5py.File(self.path, "r") as f:
            emb = f["embeddings"]
            for i in range(self.start, self.stop, self.chunk_rows):
                j = min(i + self.chunk_rows, self.stop)
                keep = self.keep[i - self.start:j - self.start]
                k = int(keep.sum())
                if k == 0:
                    continue
                emb.read_direct(buf, np.s_[i:j], np.s_[0:j - i])
                y = self._labels[i - self.start:j - self.start][keep]
                if k == j - i:
                    yield buf[:k], y
                else:
                    yield np.compress(keep, buf[:j - i], axis=0, out=kept[:k]), y

    def ids(self) -> np.ndarray:
        """(n,) ids of the rows the blocks hold, in block order."""
        import h5py

        with h5py.File(self.path, "r") as f:
            return f["ids"].asstr()[self.start:self.stop].astype(object)[self.keep]
