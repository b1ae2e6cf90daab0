"""Shared by the sharding tests (in-process, torchrun, Ray): a small real image folder whose size
does not divide into the batches, with one unreadable image, and the file comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from linprobe.features.store import decode_attr
from tests.features.imagedata import write_folder

R18 = "torchvision:resnet18:none"
# 22 files, 21 readable; batches of 4 -> 6 batches, the last of 2.
N_FILES, BATCH = 22, 4
BROKEN = "tshirt/broken.png"  # sorts first among tshirt: row 14, in the second half's shards
# Attrs that differ between two correct runs of the same extraction (timings and dates).
# Timing and load dependent (the threads attr holds measured rates; merged files keep it per shard).
VOLATILE = {"seconds", "images_per_s", "created", "resumed_from", "shards", "threads"}
EXTRACT_ARGS = ["--backbone", R18, "--image-size", "32", "--batch-size", str(BATCH),
                "--device", "cpu", "--on-error", "skip", "--workers", "0"]


def write_data(root: Path) -> Path:
    """The folder: 3 classes x 7 Fashion-MNIST PNGs + a broken PNG. Returns root."""
    write_folder(root, per_class=7, classes=3)
    (root / BROKEN).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def read_all(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    with h5py.File(path, "r") as f:
        arrays = {k: f[k][...] for k in ("embeddings", "ids", "labels", "split")}
        return arrays, {k: decode_attr(v) for k, v in f.attrs.items()}


def assert_same_file(merged: Path, single: Path) -> None:
    """The merged file holds exactly the single-process file's rows (bitwise) and attrs (but for
    timings and dates), and only the standard datasets."""
    (a, aa), (b, ba) = read_all(merged), read_all(single)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    with h5py.File(merged, "r") as f, h5py.File(single, "r") as g:
        assert set(f) == set(g)
        assert f["embeddings"].chunks == g["embeddings"].chunks
        assert f["embeddings"].is_virtual is False
    assert {k: v for k, v in aa.items() if k not in VOLATILE} == \
        {k: v for k, v in ba.items() if k not in VOLATILE}
    assert len(aa["skipped"]) == 1 and aa["skipped"][0]["id"] == BROKEN


def single_process(data: Path, out: Path, *args: str) -> Path:
    """The single-process file, made by `python -m linprobe extract` with one thread: what each
    torchrun rank (OMP_NUM_THREADS=1) and each 1-CPU Ray task runs with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINPROBE_TEST_")}
    proc = subprocess.run([sys.executable, "-m", "linprobe", "extract", *EXTRACT_ARGS, *args,
                           "--data", str(data), "--out", str(out)],
                          env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out
