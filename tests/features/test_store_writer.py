"""EmbeddingWriter: batch appends, skip bookkeeping, resume / discard of partial files, rename."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from linprobe.features.store import EmbeddingWriter, read_attrs, read_embeddings

N, D = 10, 6


def _writer(path, key="k1", **kw):
    ids = [f"c/{i:02d}.png" for i in range(N)]
    return EmbeddingWriter(
        path,
        ids=ids,
        labels=np.arange(N, dtype=np.int64) % 3,
        split=np.array([0] * 6 + [1] * 2 + [2] * 2, np.uint8),
        embed_dim=D,
        resume_key=key,
        attrs={"backbone": "x", "class_names": ["a", "b", "c"], "task": "multiclass"},
        chunk_rows=4,
        **kw,
    )


def _emb(rows) -> np.ndarray:
    return np.stack([np.full(D, r, np.float32) for r in rows]) if len(rows) else np.empty((0, D))


def test_batches_skips_and_atomic_rename(tmp_path):
    out = tmp_path / "sub" / "bb.h5"
    with _writer(out) as w:
        assert w.partial.name == "bb.h5.partial" and w.start == 0
        w.append(_emb([0, 1, 2, 3]), processed=4)
        w.append(_emb([4, 6, 7]), processed=8, skipped=[{"index": 5, "reason": "truncated"}])
        assert w.rows == 7 and w.processed == 8 and not out.exists()
        with pytest.raises(RuntimeError, match="only 8/10 samples"):
            w.finish()
        w.append(_emb([8, 9]), processed=10)
        assert w.finish({"seconds": 1.5}) == out
    assert out.exists() and not w.partial.exists()
    with h5py.File(out, "r") as f:
        assert f["embeddings"].chunks == (4, D)  # whole-batch chunks
    es = read_embeddings(out)
    kept = [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert es.embeddings[:, 0].tolist() == kept
    assert es.ids.tolist() == [f"c/{i:02d}.png" for i in kept]
    assert es.labels.tolist() == [i % 3 for i in kept]
    assert es.split.tolist() == [0] * 5 + [1] * 2 + [2] * 2
    assert es.attrs["skipped"] == [{"id": "c/05.png", "reason": "truncated"}]
    assert es.attrs["seconds"] == 1.5 and es.class_names == ["a", "b", "c"]
    assert "processed" not in es.attrs


def test_append_checks_batch_shape(tmp_path):
    with _writer(tmp_path / "a.h5") as w:
        with pytest.raises(ValueError, match=r"does not match 3 kept samples"):
            w.append(_emb([0, 1]), processed=3)
        with pytest.raises(ValueError, match=r"embed_dim 6"):
            w.append(np.zeros((2, D + 1), np.float32), processed=2)


def test_matching_partial_resumes(tmp_path, capsys):
    out = tmp_path / "a.h5"
    with _writer(out) as w:
        w.append(_emb([0, 1, 2, 3]), processed=4)
        w.append(_emb([5]), processed=6, skipped=[{"index": 4, "reason": "bad"}])
    with _writer(out) as w:
        assert w.start == 6 and w.rows == 5 and w.skipped == [{"index": 4, "reason": "bad"}]
        w.append(_emb([6, 7, 8, 9]), processed=10)
        w.finish()
    assert "resuming" in capsys.readouterr().err
    es = read_embeddings(out)
    assert es.embeddings[:, 0].tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]


def test_rows_written_after_last_counter_update_are_dropped(tmp_path):
    out = tmp_path / "a.h5"
    with _writer(out) as w:
        w.append(_emb([0, 1, 2, 3]), processed=4)
    with h5py.File(out.with_name("a.h5.partial"), "r+") as f:  # as if killed mid-batch
        f["embeddings"].resize(7, axis=0)
        f["embeddings"][4:] = 99
    with _writer(out) as w:
        assert w.start == 4 and w.rows == 4
        w.append(_emb([4, 5, 6, 7, 8, 9]), processed=10)
        w.finish()
    assert read_embeddings(out).embeddings[:, 0].tolist() == list(range(10))


@pytest.mark.parametrize("damage", ["other_key", "garbage"])
def test_foreign_or_broken_partial_is_discarded(tmp_path, capsys, damage):
    out = tmp_path / "a.h5"
    if damage == "garbage":
        out.with_name("a.h5.partial").write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    else:
        with _writer(out, key="other") as w:
            w.append(_emb([7, 7, 7, 7]), processed=4)
    with _writer(out) as w:
        assert w.start == 0 and w.rows == 0
        w.append(_emb(range(N)), processed=N)
        w.finish()
    err = capsys.readouterr().err
    assert "discarding" in err and ("another backbone" in err if damage == "other_key" else True)
    assert read_embeddings(out).embeddings[:, 0].tolist() == list(range(N))
    assert read_attrs(out)["resume_key"] == "k1"


def test_a_partial_appears_only_once_its_first_flush_is_done(tmp_path, monkeypatch):
    # A kill between creating the file and HDF5's first flush used to leave `<out>.partial` with
    # no HDF5 signature yet, which the next run cannot tell from a stranger's file and refuses
    # (tests/hostile/test_outputs.py::test_stale_lock_of_a_killed_run_does_not_block, 1 in 2).
    out = tmp_path / "a.h5"
    seen: list[bool] = []

    def killed(self, *args, **kwargs):
        seen.append(self.partial.exists())
        raise KeyboardInterrupt  # stands for the kill, at the first flush

    with monkeypatch.context() as m:
        m.setattr(EmbeddingWriter, "_set", killed)
        with pytest.raises(KeyboardInterrupt):
            _writer(out)
    assert seen == [False] and not out.with_name("a.h5.partial").exists()
    with _writer(out) as w:            # the next run starts cleanly, over the leftover
        assert w.start == 0
        w.append(_emb(range(N)), processed=N)
        w.finish()
    assert read_embeddings(out).embeddings[:, 0].tolist() == list(range(N))
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]
