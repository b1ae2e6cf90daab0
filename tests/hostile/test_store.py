"""Hostile embeddings files and failing disks (issue 9, items 5 and 10).

`linprobe train` on HDF5 files made by another tool (odd types, missing parts, damaged bytes)
must end with a clear error; extract/train on a full disk (a real, small tmpfs) must fail
cleanly, keep the previous output, and complete on re-run (extract: by resuming, bit-identical).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from linprobe.features.store import read_embeddings
from tests.hostile.harness import expect_error, expect_ok

N, D = 30, 8


def _good(f: h5py.File) -> None:
    """A valid 3-class file: 18 train, 6 val, 6 test."""
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 3
    f["embeddings"] = (rng.normal(size=(N, D)) + labels[:, None]).astype(np.float32)
    f.create_dataset("ids", data=[f"img/{i}.png" for i in range(N)],
                     dtype=h5py.string_dtype("utf-8"))
    f["labels"] = labels.astype(np.int64)
    f["split"] = np.repeat(np.array([0, 1, 2], np.uint8), [18, 6, 6])
    f.attrs["class_names"] = 'json:["a", "b", "c"]'
    f.attrs["task"] = "multiclass"


def _replace(name: str, value: Callable[[], object]) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[name]
        f[name] = value()
    return edit


def _attr(name: str, value: object) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        if value is None:
            del f.attrs[name]
        else:
            f.attrs[name] = value
    return edit


CASES = {
    "missing_labels": (lambda f: f.__delitem__("labels"), [r"missing datasets \['labels'\]"]),
    "embeddings_int64": (_replace("embeddings", lambda: np.ones((N, D), np.int64)),
                         [r"'embeddings'", "float32", "int64"]),
    "embeddings_float64": (_replace("embeddings", lambda: np.ones((N, D), np.float64)),
                           [r"'embeddings'", "float32", "float64", "astype"]),
    "embeddings_3d": (_replace("embeddings", lambda: np.ones((N, 2, 4), np.float32)),
                      [r"'embeddings'", r"\(N, D\)", r"\(30, 2, 4\)"]),
    "labels_strings": (_replace("labels", lambda: np.array([b"a", b"b", b"c"] * 10)),
                       [r"'labels'", "integer", "class_names"]),
    "labels_float": (_replace("labels", lambda: (np.arange(N) % 3).astype(np.float64)),
                     [r"'labels'", "integer"]),
    "split_out_of_range": (_replace("split", lambda: np.full(N, 5, np.uint8)),
                           [r"'split'", r"0 \(train\), 1 \(val\), 2 \(test\)", "5"]),
    "split_strings": (_replace("split", lambda: np.array([b"train"] * N)),
                      [r"'split'", "integer"]),
    "ids_ints": (_replace("ids", lambda: np.arange(N)), [r"'ids'", "strings"]),
    "lengths_differ": (_replace("labels", lambda: np.zeros(N - 1, np.int64)),
                       [r"'labels'", "29", "30"]),
    "class_names_missing": (_attr("class_names", None), ["class_names"]),
    "class_names_garbage_json": (_attr("class_names", "json:[not json"),
                                 [r"attribute 'class_names'", "json"]),
    "class_names_not_a_list": (_attr("class_names", 7), [r"'class_names'", "list of strings"]),
    "class_names_too_short": (_attr("class_names", 'json:["a", "b"]'),
                              [r"'labels'", r"\[0, 1\]", "2 classes"]),
    "task_garbage": (_attr("task", "json:{}"), [r"'task'", "multiclass"]),
    "embeddings_is_a_group": (lambda f: (f.__delitem__("embeddings"),
                                         f.create_group("embeddings")),
                              [r"'embeddings'", "dataset"]),
    "embeddings_nan": (_replace("embeddings", lambda: np.full((N, D), np.nan, np.float32)),
                       ["NaN"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_train_refuses_odd_hdf5(tmp_path, case):
    edit, match = CASES[case]
    h5 = tmp_path / "other.h5"
    with h5py.File(h5, "w") as f:
        _good(f)
        edit(f)
    expect_error(["train", "--embeddings", h5, "--probe", "logreg", "--out-dir", tmp_path / "a"],
                 [str(h5), *match], watch=[tmp_path])
    assert not (tmp_path / "a").exists()


def test_the_good_file_trains(tmp_path):
    """The base of every case above is valid: each case fails for its own defect only."""
    h5 = tmp_path / "other.h5"
    with h5py.File(h5, "w") as f:
        _good(f)
    expect_ok(["train", "--embeddings", h5, "--probe", "logreg", "--out-dir", tmp_path / "a"])


@pytest.mark.parametrize("content", ["text", "empty", "truncated"])
def test_train_refuses_damaged_files(tmp_path, content):
    h5 = tmp_path / "other.h5"
    if content == "text":
        h5.write_text("id,label\nx.png,cat\n")
    elif content == "empty":
        h5.write_bytes(b"")
    else:
        with h5py.File(h5, "w") as f:
            _good(f)
        h5.write_bytes(h5.read_bytes()[: h5.stat().st_size * 2 // 3])
    expect_error(["train", "--embeddings", h5, "--probe", "logreg", "--out-dir", tmp_path / "a"],
                 [str(h5), "HDF5", "re-run"], watch=[tmp_path])


# -- a real full disk: a small tmpfs (root only; CI runs as root) ---------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs at tmp_path/disk; ``resize(bytes)`` remounts it with another size."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)

    def resize(size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)

    try:
        yield mnt, resize
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _used(mnt: Path) -> int:
    import os

    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


EXTRACT = ["--backbone", "torchvision:resnet18:none", "--image-size", "64", "--batch-size", "4",
           "--device", "cpu", "--workers", "0"]


def test_extract_on_a_full_disk_fails_cleanly_and_resumes_bit_identical(tmp_path, small_disk):
    from tests.features.imagedata import write_folder

    mnt, resize = small_disk
    data = write_folder(tmp_path / "fm", per_class=16, classes=3)  # 48 images, 12 batches
    ref = tmp_path / "ref.h5"
    expect_ok(["extract", *EXTRACT, "--data", data, "--out", ref])
    out = mnt / "bb.h5"
    # The previous complete output (another image size), which a failed run must not touch.
    expect_ok(["extract", *EXTRACT[:2], "--image-size", "32", *EXTRACT[4:], "--data", data,
               "--out", out])
    resize(_used(mnt) + 48 * 1024)  # room for about half of the new partial file
    expect_error(["extract", *EXTRACT, "--data", data, "--out", out],
                 [r"no space left on device while writing .*bb\.h5\.partial",
                  "free space and re-run the same command to resume"], watch=[data, out])
    partial = mnt / "bb.h5.partial"
    with h5py.File(partial, "r") as f:
        assert 0 < f["batches"].shape[0] < 12  # it failed mid-run
    resize(4 << 20)
    r = expect_ok(["extract", *EXTRACT, "--data", data, "--out", out], watch=[data])
    assert "resuming" in r.err and not partial.exists()
    a, b = read_embeddings(ref), read_embeddings(out)
    assert b.attrs["resumed_from"] > 0
    assert a.embeddings.tobytes() == b.embeddings.tobytes() and (a.ids == b.ids).all()


def test_train_on_a_full_disk_keeps_the_previous_artifacts(tmp_path, small_disk):
    import json

    mnt, _ = small_disk
    h5 = tmp_path / "bb.h5"
    with h5py.File(h5, "w") as f:
        _good(f)
    args = ["train", "--embeddings", h5, "--probe", "logreg", "--out-dir", mnt / "a"]
    expect_ok(args)
    metrics = mnt / "a" / "metrics" / "bb" / "logreg.json"
    before = json.loads(metrics.read_text())
    filler = mnt / "filler"
    with open(filler, "wb", buffering=0) as fo:  # fill the disk to the last block
        try:
            while fo.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    expect_error(args, [r"no space left on device while writing .*a/probes/bb/logreg\.joblib",
                        "previous file is unchanged"], watch=[mnt, h5])
    assert sorted(p.name for p in (mnt / "a").rglob("*") if p.is_file()) == [
        "logreg.csv", "logreg.joblib", "logreg.json", "logreg.scores.npy"]  # no temp left
    filler.unlink()
    expect_ok(args)
    assert _untimed(json.loads(metrics.read_text())) == _untimed(before)


def _untimed(obj):
    """A metrics dict without its timing fields (and the threads, which follow the load)."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k not in ("seconds", "fit_seconds", "threads")}
    return [_untimed(v) for v in obj] if isinstance(obj, list) else obj
