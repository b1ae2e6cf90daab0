"""EmbeddingWriter: streams one backbone's embeddings into ``<out>.partial``, verifiably resumable.

Besides the rows, the partial file holds what a resume must check before it trusts them:

    batches  (K,)   one record per appended batch: samples processed and rows written after it,
                    and the sha256 of its rows + skipped samples (a torn or zeroed batch fails)
    sources  (N, 3) int64 (size, mtime_ns, ctime_ns) of every image when the run began (-1 if
                    unknown): an image edited in place since then is recomputed, even at the same
                    size (ctime moves on any write, also when the old mtime is restored)

A resume verifies every batch (hashing is far faster than the forward pass that made the
rows) and continues from the first batch that fails a digest or holds a changed image;
batch boundaries stay those of the first run, so the result is bit-identical to a clean run.
The file is written through a Python file object: a failed write (disk full, EIO) then raises an
OSError and leaves HDF5 in a state it can close, whereas HDF5's own driver crashes the
interpreter at exit after ENOSPC (measured with h5py 3.16 / HDF5 2.0).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np

from linprobe.diskio import write_error
from linprobe.features.store import decode_attr, encode_attr, fresh_partial_path, partial_path

_CACHE_BYTES = 32 << 20  # chunk cache large enough that batch appends never re-read a chunk
_BATCH = np.dtype([("processed", "<i8"), ("rows", "<i8"), ("sha256", "S64")])
_RESUME_HINT = "re-run the same command to resume"
_WORK = ("batches", "sources")  # bookkeeping datasets, removed from the final file
# Everything a partial file can hold before its attrs are written: how a partial file killed in
# its first moments is still recognised as this writer's (pipeline.outputs).
PARTIAL_DATASETS = frozenset({"embeddings", *_WORK})


def _log(msg: str) -> None:
    print(f"linprobe: {msg}", file=sys.stderr, flush=True)


class _DropAfterFailure:
    """The partial file as h5py sees it. A failed write (disk full, EIO) is recorded in
    :attr:`error` and it and all later writes are dropped as if done: raising inside h5py's
    driver callbacks leaves HDF5 and h5py in states that crash (SystemError, or a segfault at
    exit with HDF5's own driver). The writer checks :attr:`error` after each flush; what
    reached the disk is checked by the digests on resume."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self.error = f, None

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        done = 0
        while self.error is None and done < len(view):
            try:  # an unbuffered write may be short (e.g. the last blocks of a disk): go on
                done += self._f.write(view[done:])
            except OSError as exc:
                self.error = exc
        return len(view)

    def truncate(self, size: int | None = None) -> Any:
        if self.error is None:
            try:
                return self._f.truncate(size)
            except OSError as exc:
                self.error = exc
        return size

    def __getattr__(self, name: str) -> Any:  # read, readinto, seek, tell, flush, fileno, close
        return getattr(self._f, name)


def file_stats(paths: Sequence[Path]) -> np.ndarray:
    """(N, 3) int64 (size, mtime_ns, ctime_ns) of ``paths``; -1 for a file that is missing."""
    out = np.full((len(paths), 3), -1, np.int64)
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            continue
        out[i] = st.st_size, st.st_mtime_ns, st.st_ctime_ns
    return out


def batch_digest(rows: np.ndarray, skipped: list[dict[str, Any]], processed: int,
                 rows_end: int) -> bytes:
    """sha256 hex (ASCII bytes) of one batch: rows (B, D) float32, its skipped samples and the
    counters after it."""
    h = hashlib.sha256(np.ascontiguousarray(rows, np.float32).tobytes())
    h.update(json.dumps([skipped, int(processed), int(rows_end)], sort_keys=True).encode())
    return h.hexdigest().encode()


class EmbeddingWriter:
    """Streams the N samples' embeddings into ``<path>.partial``, renamed to ``path`` when done.

    :meth:`append` takes a whole batch of rows plus the samples skipped in it and flushes, so
    the partial file always ends on a batch boundary. A partial file with the same
    ``resume_key`` is verified (module docstring) and resumed from :attr:`start`; one with
    another key, or that cannot be read (killed mid-flush, truncated), is discarded with a
    message. ``sources`` (N paths) are the images, whose stats detect in-place edits.

    ids: (N,) str; labels: (N,) int64 or (N, C) uint8; split: (N,) uint8 codes into SPLITS.
    Write failures raise :class:`linprobe.diskio.WriteError`; the partial file stays resumable.
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
        sources: Sequence[Path] | None = None,
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.ids, self.labels, self.split = list(ids), np.asarray(labels), np.asarray(split)
        self.n, self.embed_dim = len(self.ids), int(embed_dim)
        self._sources = list(sources) if sources is not None else None
        # Stats taken before any image of this session is read: an edit after this moment is
        # seen by the next resume (at worst a needless recompute, never a stale row).
        self._stats = (file_stats(self._sources) if self._sources is not None
                       else np.full((self.n, 3), -1, np.int64))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fo: _DropAfterFailure | None = None
        self._f: h5py.File | None = None
        try:
            self._open(resume_key, attrs or {}, max(1, int(chunk_rows)))
        except (OSError, RuntimeError) as exc:
            raise self._failed(exc, self.partial) from exc
        self.start: int = self.processed  # where this session resumes

    # -- opening and verifying ------------------------------------------------------------

    def _h5(self, mode: str, path: Path | None = None) -> h5py.File:
        # Unbuffered: nothing is held in this process, so a kill loses nothing h5py flushed.
        raw = open(path or self.partial, "r+b" if mode == "r+" else "w+b", buffering=0)
        self._fo = _DropAfterFailure(raw)
        return h5py.File(self._fo, mode, rdcc_nbytes=_CACHE_BYTES)

    def _open(self, key: str, attrs: dict[str, Any], chunk_rows: int) -> None:
        if self.partial.exists():
            reason = self._resume(key)
            if reason is None:
                return
            _log(f"discarding {self.partial}: {reason}; starting over")
            self.close()
            self.partial.unlink()
        # Built beside it and renamed once flushed: a torn fresh partial is truncated by the next
        # start instead of refused as a stranger's file.
        new = fresh_partial_path(self.path)
        f = self._f = self._h5("w", new)
        f.create_dataset("embeddings", shape=(0, self.embed_dim), maxshape=(None, self.embed_dim),
                         dtype=np.float32, chunks=(min(chunk_rows, max(1, self.n)), self.embed_dim))
        f.create_dataset("batches", shape=(0,), maxshape=(None,), dtype=_BATCH, chunks=(64,))
        f.create_dataset("sources", data=self._stats)
        for k, v in attrs.items():
            f.attrs[k] = encode_attr(v)
        f.attrs.update(resume_key=key, skipped_index=encode_attr([]))
        self._set(0, 0, [])
        os.replace(new, self.partial)

    def _resume(self, key: str) -> str | None:
        """Open and verify the partial file and cut it back to what verifies; or say why it
        cannot be resumed at all."""
        try:
            f = self._f = self._h5("r+")
            if decode_attr(f.attrs.get("resume_key", "")) != key:
                return "it was made with another backbone, preprocessing or dataset"
            emb, table, stats = f["embeddings"], f["batches"][...], f["sources"][...]
            skipped = decode_attr(f.attrs["skipped_index"])
            if emb.shape[1] != self.embed_dim or stats.shape != (self.n, 3) \
                    or table.dtype != _BATCH:
                return "its contents are inconsistent"
            good = self._verified(emb, table, skipped)
            good = min(good, self._unchanged(table, stats))
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            return f"it cannot be read ({type(exc).__name__}: {exc})"
        processed, rows = (int(table[good - 1]["processed"]), int(table[good - 1]["rows"])) \
            if good else (0, 0)
        # Cut back to the verified batches; samples from here on get this session's stats.
        f["batches"].resize(good, axis=0)
        f["sources"][processed:] = self._stats[processed:]
        self._set(processed, rows, [s for s in skipped if s["index"] < processed])
        _log(f"resuming {self.partial} at sample {processed}/{self.n} ({good} verified batches)")
        return None

    def _verified(self, emb: h5py.Dataset, table: np.ndarray, skipped: list[dict]) -> int:
        """Number of leading batches whose rows and skips match their digest."""
        p0 = r0 = 0
        for k, rec in enumerate(table):
            p1, r1 = int(rec["processed"]), int(rec["rows"])
            if not (p0 <= p1 <= self.n and r0 <= r1 <= emb.shape[0]):
                _log(f"{self.partial}: batch {k} has impossible counters; recomputing from "
                     f"sample {p0}")
                return k
            mine = [s for s in skipped if p0 <= s["index"] < p1]
            if batch_digest(emb[r0:r1], mine, p1, r1) != rec["sha256"]:
                _log(f"{self.partial}: batch {k} (samples {p0}..{p1 - 1}) does not match its "
                     f"digest (torn or corrupted write); recomputing from sample {p0}")
                return k
            p0, r0 = p1, r1
        return len(table)

    def _unchanged(self, table: np.ndarray, stats: np.ndarray) -> int:
        """Number of leading batches none of whose images changed since they were read."""
        if self._sources is None:
            return len(table)
        done = int(table[-1]["processed"]) if len(table) else 0
        changed = np.flatnonzero((stats[:done] != self._stats[:done]).any(axis=1))
        if not len(changed):
            return len(table)
        first = int(changed[0])
        k = int(np.searchsorted(table["processed"], first, side="right"))
        names = ", ".join(str(self._sources[i]) for i in changed[:5])
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        _log(f"{len(changed)} image(s) changed since the interrupted run ({names}{more}); "
             f"re-extracting from sample {int(table[k - 1]['processed']) if k else 0}")
        return k

    # -- writing ---------------------------------------------------------------------------

    def _set(self, processed: int, rows: int, skipped: list[dict[str, Any]]) -> None:
        """Cut/extend the in-memory and on-disk bookkeeping to ``processed``/``rows``."""
        self.processed, self.rows, self.skipped = processed, rows, skipped
        f = self._f
        f["embeddings"].resize(rows, axis=0)
        f.attrs["skipped_index"] = encode_attr(skipped)
        f.attrs["processed"] = processed  # progress for observers; resume trusts `batches`
        self._flush()

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
        block = np.asarray(embeddings, dtype=np.float32)
        rows = self.rows + expected
        try:
            f, emb = self._f, self._f["embeddings"]
            emb.resize(rows, axis=0)
            emb[self.rows:] = block
            if skipped:
                f.attrs["skipped_index"] = encode_attr(self.skipped + skipped)
            # The digest record goes after the rows it covers: a crash before it leaves the
            # previous batch as the resume point, one after it is caught by verification.
            table = f["batches"]
            table.resize(table.shape[0] + 1, axis=0)
            table[-1] = (processed, rows, batch_digest(block, skipped, processed, rows))
            f.attrs["processed"] = processed
            self._flush()
        except (OSError, RuntimeError) as exc:
            raise self._failed(exc, self.partial) from exc
        self.processed, self.rows, self.skipped = processed, rows, self.skipped + skipped

    def finish(self, attrs: dict[str, Any] | None = None) -> Path:
        """Write ids/labels/split of the kept samples and ``attrs``, then rename to ``path``."""
        if self.processed != self.n:
            raise RuntimeError(f"only {self.processed}/{self.n} samples written to {self.partial}")
        keep = np.ones(self.n, bool)
        keep[[s["index"] for s in self.skipped]] = False
        skipped = [{"id": self.ids[s["index"]], "reason": s["reason"]} for s in self.skipped]
        try:
            f = self._f
            for k in ("ids", "labels", "split"):  # left by a finish that failed (disk full)
                if k in f:
                    del f[k]
            f.create_dataset("ids", data=[i for i, k in zip(self.ids, keep) if k],
                             dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("labels", data=self.labels[keep])
            f.create_dataset("split", data=self.split[keep].astype(np.uint8))
            for k, v in {**(attrs or {}), "skipped": skipped}.items():
                f.attrs[k] = encode_attr(v)
            for k in _WORK:
                del f[k]
            for k in ("processed", "skipped_index"):
                del f.attrs[k]
            f.close()
            self._fo.flush()
            if self._fo.error is not None:
                raise self._fo.error
            os.fsync(self._fo.fileno())  # the renamed file must be complete, not just named
            self._fo.close()
            os.replace(self.partial, self.path)  # atomic: readers see the old file or the new
        except (OSError, RuntimeError) as exc:
            raise self._failed(exc, self.path) from exc
        return self.path

    def _flush(self) -> None:
        """Flush to the OS; raise the OSError of any write that failed since the last one."""
        self._f.flush()
        self._fo.flush()
        if self._fo.error is not None:
            raise self._fo.error

    def _failed(self, exc: Exception, path: Path) -> Exception:
        """Close after a failed write; the error to raise. h5py reports a failed write of our
        file object as RuntimeError: the file object keeps the OSError with its errno."""
        cause = self._fo.error if self._fo is not None and self._fo.error else exc
        self.close()
        if isinstance(cause, RuntimeError):
            return cause  # not an I/O failure: a bug, keep its traceback
        return write_error(path, cause, _RESUME_HINT)

    def close(self) -> None:
        """Close the partial file (kept on disk for a later resume). Never raises: after a
        failed write HDF5 may fail to flush again, and the digests make the file safe anyway."""
        for closer in (self._f, self._fo):
            try:
                if closer is not None:
                    closer.close()
            except (OSError, RuntimeError, ValueError):
                pass

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
