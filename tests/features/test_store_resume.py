"""Resuming verifies what it resumes from: torn or corrupted partial files and images changed in
place since the interrupted run are recomputed, never trusted (issue 9, items 5 and 6)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from linprobe.features.store import EmbeddingWriter, read_embeddings

N, D, B = 12, 6, 4  # 3 batches of 4


def _sources(tmp_path: Path) -> list[Path]:
    out = []
    for i in range(N):
        p = tmp_path / "img" / f"{i:02d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes([i]) * 16)
        out.append(p)
    return out


def _writer(out: Path, sources: list[Path] | None = None) -> EmbeddingWriter:
    return EmbeddingWriter(out, ids=[f"c/{i:02d}" for i in range(N)],
                           labels=np.arange(N, dtype=np.int64) % 3,
                           split=np.array([0] * 8 + [1] * 2 + [2] * 2, np.uint8),
                           embed_dim=D, resume_key="k", chunk_rows=B,
                           attrs={"class_names": ["a", "b", "c"], "task": "multiclass"},
                           sources=sources)


def _rows(lo: int, hi: int) -> np.ndarray:
    """The 'true' embeddings of samples lo..hi-1: (hi-lo, D) float32, all non-zero."""
    return (np.arange(lo, hi, dtype=np.float32)[:, None] + 1) * np.linspace(1, 2, D, dtype=np.float32)


def _interrupted(out: Path, batches: int, sources=None) -> Path:
    with _writer(out, sources) as w:
        for b in range(batches):
            w.append(_rows(b * B, (b + 1) * B), processed=(b + 1) * B)
    return out.with_name(out.name + ".partial")


def _resume(out: Path, sources=None) -> tuple[int, np.ndarray]:
    """Re-run as extract does: continue from writer.start with the true rows; (start, result)."""
    with _writer(out, sources) as w:
        start = w.start
        for lo in range(start, N, B):
            w.append(_rows(lo, lo + B), processed=lo + B)
        w.finish()
    return start, read_embeddings(out).embeddings


def _damage_rows(partial: Path, lo: int, hi: int, value: float | None = None) -> None:
    with h5py.File(partial, "r+") as f:
        e = f["embeddings"]
        if value is None:  # flip bytes
            raw = e[lo:hi].view(np.uint8).copy()
            raw[:, 5] ^= 0xFF
            e[lo:hi] = raw.view(np.float32)
        else:
            e[lo:hi] = value


@pytest.mark.parametrize("damage, start", [
    ("zero_last_batch", 4),       # the disk-full bug: rows on disk are zeros, counters moved on
    ("flip_first_batch", 0),
    ("flip_middle_batch", 4),
    ("delete_counters", 8),
    ("delete_digests", 0),        # nothing can be verified: start over
])
def test_damaged_partial_is_recomputed_from_the_first_bad_batch(tmp_path, capsys, damage, start):
    out = tmp_path / "a.h5"
    partial = _interrupted(out, 2)
    if damage == "zero_last_batch":
        _damage_rows(partial, 4, 8, 0.0)
    elif damage == "flip_first_batch":
        _damage_rows(partial, 0, 1)
    elif damage == "flip_middle_batch":
        _damage_rows(partial, 5, 6)
    else:
        with h5py.File(partial, "r+") as f:
            for k in ({"delete_counters": ["processed", "rows"]}.get(damage) or []):
                if k in f.attrs:
                    del f.attrs[k]
            if damage == "delete_digests":
                del f["batches"]
    got_start, emb = _resume(out)
    assert got_start == start
    np.testing.assert_array_equal(emb, _rows(0, N))
    if damage.startswith(("zero", "flip")):
        assert "does not match its digest" in capsys.readouterr().err


def test_truncated_partial_at_many_offsets_ends_identical(tmp_path, capsys):
    out = tmp_path / "a.h5"
    partial = _interrupted(out, 2)
    whole = partial.read_bytes()
    for cut in sorted({1, 100, 800, len(whole) // 3, len(whole) // 2, len(whole) - 4096,
                       len(whole) - 1}):
        partial.write_bytes(whole[:cut])
        _, emb = _resume(out)
        np.testing.assert_array_equal(emb, _rows(0, N))
        out.unlink()
    assert "discarding" in capsys.readouterr().err


def test_image_changed_in_place_with_same_size_is_reextracted(tmp_path, capsys):
    out = tmp_path / "a.h5"
    src = _sources(tmp_path)
    _interrupted(out, 2, src)
    st = src[5].stat()
    src[5].write_bytes(b"\xff" * st.st_size)  # same size, other content, new mtime
    start, emb = _resume(out, src)
    assert start == 4  # the batch holding sample 5 and everything after it is recomputed
    err = capsys.readouterr().err
    assert "changed since" in err and "05.bin" in err
    np.testing.assert_array_equal(emb, _rows(0, N))


def test_touching_mtime_alone_triggers_reextraction(tmp_path, capsys):
    out = tmp_path / "a.h5"
    src = _sources(tmp_path)
    _interrupted(out, 2, src)
    st = src[1].stat()
    os.utime(src[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _resume(out, src)[0] == 0
    assert "01.bin" in capsys.readouterr().err


def test_same_size_same_mtime_edit_is_caught_by_ctime(tmp_path):
    """An edit that restores the old mtime (cp -p, rsync -t, tar) still moves the inode's
    ctime, which no user can set."""
    out = tmp_path / "a.h5"
    src = _sources(tmp_path)
    _interrupted(out, 2, src)
    st = src[6].stat()
    src[6].write_bytes(b"\xee" * st.st_size)
    os.utime(src[6], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _resume(out, src)[0] == 4


def test_unchanged_sources_resume_where_they_stopped(tmp_path):
    out = tmp_path / "a.h5"
    src = _sources(tmp_path)
    _interrupted(out, 2, src)
    start, emb = _resume(out, src)
    assert start == 8
    np.testing.assert_array_equal(emb, _rows(0, N))


def test_finish_after_a_failed_finish_completes(tmp_path):
    """A finish that failed after creating ids (disk full) leaves a partial that finishes."""
    out = tmp_path / "a.h5"
    partial = _interrupted(out, 3)
    with h5py.File(partial, "r+") as f:
        f.create_dataset("ids", data=[b"x"])
    _, emb = _resume(out)
    np.testing.assert_array_equal(emb, _rows(0, N))
    assert read_embeddings(out).ids.tolist() == [f"c/{i:02d}" for i in range(N)]
