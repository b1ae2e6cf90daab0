"""HDF5 embedding store: one file per backbone (the contract in DESIGN.md).

Layout of ``<name>.h5``::

    embeddings  (N, D) float32, chunked by rows
    ids         (N,)   UTF-8 strings, stable relative paths of the images
    labels      (N,)   int64 class index, or (N, C) uint8 multi-hot
    split       (N,)   uint8 codes, index into SPLITS
    attrs       backbone spec, weights, preprocessing, image size, embedding dim, class names,
                task, dataset fingerprint, versions, device, seconds, images/s, ...

Attribute values that are not scalars or strings are stored as JSON strings and decoded on read.
This module never imports torch, so the report can read embeddings without it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLITS)}
TASKS: tuple[str, ...] = ("multiclass", "multilabel")

_JSON_PREFIX = "json:"
_CACHE_BYTES = 32 << 20  # chunk cache large enough that batch appends never re-read a chunk


def encode_attr(value: Any) -> Any:
    """Return an HDF5-storable form of ``value`` (str/int/float kept, the rest as JSON)."""
    if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
        return value
    return _JSON_PREFIX + json.dumps(value)


def decode_attr(value: Any) -> Any:
    """Inverse of :func:`encode_attr`."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str) and value.startswith(_JSON_PREFIX):
        return json.loads(value[len(_JSON_PREFIX):])
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class EmbeddingSet:
    """Everything one backbone's HDF5 file holds, in memory.

    embeddings: (N, D) float32; ids: (N,) str; labels: (N,) int64 or (N, C) uint8;
    split: (N,) uint8 codes into SPLITS.
    """

    embeddings: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    class_names: list[str]
    task: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def mask(self, split: str) -> np.ndarray:
        """Boolean (N,) mask of the rows in ``split`` ('train', 'val' or 'test')."""
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.split == SPLIT_CODES[split]

    def subset(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X (n, D) float32, y (n,) or (n, C), ids (n,)) of one split."""
        m = self.mask(split)
        return self.embeddings[m], self.labels[m], self.ids[m]


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Decoded attributes of an embeddings file, without loading the arrays."""
    with h5py.File(path, "r") as f:
        return {k: decode_attr(v) for k, v in f.attrs.items()}


def read_embeddings(path: str | Path, *, load_embeddings: bool = True) -> EmbeddingSet:
    """Load an embeddings file written by the extractor.

    With ``load_embeddings=False`` the (N, D) matrix is left out (an empty (N, 0) array), which
    is enough for summaries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"embeddings file {path} does not exist; run `linprobe extract ... --out {path}` first"
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 embeddings file: {exc}") from exc
    with f:
        missing = [k for k in ("embeddings", "ids", "labels", "split") if k not in f]
        if missing:
            raise ValueError(f"{path} is missing datasets {missing}; re-run the extraction")
        attrs = {k: decode_attr(v) for k, v in f.attrs.items()}
        n = f["ids"].shape[0]
        emb = f["embeddings"][...] if load_embeddings else np.empty((n, 0), np.float32)
        ids = f["ids"].asstr()[...].astype(object)
        labels = f["labels"][...]
        split = f["split"][...].astype(np.uint8)
    return EmbeddingSet(
        embeddings=np.asarray(emb, dtype=np.float32),
        ids=ids,
        labels=labels,
        split=split,
        class_names=list(attrs.get("class_names", [])),
        task=str(attrs.get("task", "multiclass")),
        attrs=attrs,
    )


def partial_path(path: str | Path) -> Path:
    """Where the writer of ``path`` streams its rows until the file is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def _log(msg: str) -> None:
    print(f"linprobe: {msg}", file=sys.stderr, flush=True)


class EmbeddingWriter:
    """Streams one backbone's embeddings into ``<path>.partial`` and renames it when complete.

    The dataset's N samples are consumed in order; :meth:`append` takes a whole batch of rows
    (never single rows) plus the samples skipped in it, and flushes, so the partial file always
    ends on a batch boundary. A partial file whose ``resume_key`` matches is resumed from
    :attr:`start`; one with another key (different backbone, preprocessing or dataset) or that
    cannot be read (killed mid-flush) is discarded with a message.

    ids: (N,) str; labels: (N,) int64 or (N, C) uint8; split: (N,) uint8 codes into SPLITS.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        ids: list[str],
        labels: np.ndarray,
        split: np.ndarray,
        embed_dim: int,
        resume_key: str,
        attrs: dict[str, Any] | None = None,
        chunk_rows: int = 256,
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.ids, self.labels, self.split = list(ids), np.asarray(labels), np.asarray(split)
        self.n, self.embed_dim = len(self.ids), int(embed_dim)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self._open_partial(resume_key, attrs or {}, max(1, int(chunk_rows)))
        self._emb = self._f["embeddings"]
        self.start: int = self.processed  # where this session resumes
        self.skipped: list[dict[str, Any]] = decode_attr(self._f.attrs["skipped_index"])

    @property
    def processed(self) -> int:
        """Samples consumed so far (written or skipped): the index of the next one."""
        return int(self._f.attrs["processed"])

    @property
    def rows(self) -> int:
        """Rows of embeddings written so far (samples processed minus skipped)."""
        return int(self._f.attrs["rows"])

    def _open_partial(self, key: str, attrs: dict[str, Any], chunk_rows: int) -> h5py.File:
        if self.partial.exists():
            reason = self._resume_problem(key)
            if reason is None:
                f = h5py.File(self.partial, "r+", rdcc_nbytes=_CACHE_BYTES)
                rows = int(f.attrs["rows"])
                # A kill between the row write and the counter update leaves extra rows: drop them.
                f["embeddings"].resize(rows, axis=0)
                _log(f"resuming {self.partial} at sample {int(f.attrs['processed'])}/{self.n}")
                return f
            _log(f"discarding {self.partial}: {reason}; starting over")
            self.partial.unlink()
        f = h5py.File(self.partial, "w", rdcc_nbytes=_CACHE_BYTES)
        f.create_dataset(
            "embeddings",
            shape=(0, self.embed_dim),
            maxshape=(None, self.embed_dim),
            dtype=np.float32,
            chunks=(min(chunk_rows, max(1, self.n)), self.embed_dim),
        )
        for k, v in attrs.items():
            f.attrs[k] = encode_attr(v)
        f.attrs.update(resume_key=key, processed=0, rows=0, skipped_index=encode_attr([]))
        f.flush()
        return f

    def _resume_problem(self, key: str) -> str | None:
        """Why the existing partial file cannot be resumed, or None if it can."""
        try:
            with h5py.File(self.partial, "r") as f:
                old = decode_attr(f.attrs.get("resume_key", ""))
                if old != key:
                    return "it was made with another backbone, preprocessing or dataset"
                emb = f["embeddings"]
                rows, processed = int(f.attrs["rows"]), int(f.attrs["processed"])
                if emb.shape[1] != self.embed_dim or emb.shape[0] < rows or processed > self.n:
                    return "its contents are inconsistent"
        except (OSError, KeyError, ValueError) as exc:
            return f"it cannot be read ({exc})"
        return None

    def append(
        self,
        embeddings: np.ndarray,
        *,
        processed: int,
        skipped: list[dict[str, Any]] | None = None,
    ) -> None:
        """Write one batch: ``embeddings`` (B, D) for the samples up to index ``processed``
        (exclusive) that were not ``skipped`` (dicts with "index" and "reason")."""
        skipped = skipped or []
        expected = processed - self.processed - len(skipped)
        if embeddings.shape != (expected, self.embed_dim):
            raise ValueError(
                f"batch of shape {embeddings.shape} does not match {expected} kept samples "
                f"x embed_dim {self.embed_dim}"
            )
        rows = self.rows
        if expected:
            self._emb.resize(rows + expected, axis=0)
            self._emb[rows:] = np.asarray(embeddings, dtype=np.float32)
        if skipped:
            self.skipped += skipped
            self._f.attrs["skipped_index"] = encode_attr(self.skipped)
        # Counters last: until they move, a crash leaves the previous batch as the resume point.
        self._f.attrs["rows"] = rows + expected
        self._f.attrs["processed"] = processed
        self._f.flush()

    def finish(self, attrs: dict[str, Any] | None = None) -> Path:
        """Write ids/labels/split of the kept samples and ``attrs``, then rename to ``path``."""
        if self.processed != self.n:
            raise RuntimeError(
                f"only {self.processed}/{self.n} samples written to {self.partial}"
            )
        keep = np.ones(self.n, bool)
        keep[[s["index"] for s in self.skipped]] = False
        f = self._f
        kept_ids = [i for i, k in zip(self.ids, keep) if k]
        f.create_dataset("ids", data=kept_ids, dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("labels", data=self.labels[keep])
        f.create_dataset("split", data=self.split[keep].astype(np.uint8))
        skipped = [{"id": self.ids[s["index"]], "reason": s["reason"]} for s in self.skipped]
        for k, v in {**(attrs or {}), "skipped": skipped}.items():
            f.attrs[k] = encode_attr(v)
        for k in ("processed", "rows", "skipped_index"):
            del f.attrs[k]
        f.close()
        os.replace(self.partial, self.path)  # atomic: readers see the old file or the new one
        return self.path

    def close(self) -> None:
        """Close the partial file (kept on disk for a later resume)."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
