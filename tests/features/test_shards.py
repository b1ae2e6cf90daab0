"""Sharded extraction in one process: shard specs, the batch grid, shard files (resumable,
kept when done), and `linprobe merge` == the single-process file, refusing bad shard sets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from linprobe.features.extract import extract_embeddings
from linprobe.features.merge import merge_shards
from linprobe.features.shards import Shard, parse_shard, shard_path, shard_rows, shards_dir
from linprobe.features.store import decode_attr, encode_attr
from linprobe.pipeline.cli import main
from tests.features.sharddata import BATCH, BROKEN, N_FILES, R18, assert_same_file, write_data

KW = dict(image_size=32, batch_size=BATCH, num_workers=0, on_error="skip", progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The data, its single-process file, and its 3 shards (rows 0-7, 8-15, 16-21)."""
    root = tmp_path_factory.mktemp("shards")
    data = write_data(root / "data")
    single = extract_embeddings(R18, data, root / "single.h5", **KW)
    out = root / "sharded.h5"
    for i in (2, 0, 1):  # any order
        extract_embeddings(R18, data, out, shard=Shard(i, 3), **KW)
    return {"data": data, "single": single, "out": out, "root": root}


@pytest.mark.parametrize("text", ["3/2", "0/0", "a/b", "1", "-1/2", "2/2"])
def test_bad_shard_spec_names_the_flag_and_fix(text, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["extract", "--backbone", R18, "--data", "d", "--out", "o.h5", f"--shard={text}"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "linprobe: error:" in err and "--shard" in err
    assert "0 <= I < N" in err and "Traceback" not in err


def test_spec_is_zero_based():
    assert parse_shard("0/1") == Shard(0, 1) and parse_shard(" 1 / 2 ") == Shard(1, 2)


@pytest.mark.parametrize("n, batch, count", [(22, 4, 3), (22, 4, 2), (22, 4, 8), (5, 8, 2),
                                             (0, 4, 2), (64, 8, 8), (65, 8, 8)])
def test_shards_tile_the_rows_on_the_batch_grid(n, batch, count):
    rows = [shard_rows(Shard(i, count), n, batch) for i in range(count)]
    assert rows[0][0] == 0 and rows[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))  # no gap, no overlap
    assert all(lo % batch == 0 and (hi % batch == 0 or hi == n) for lo, hi in rows)
    sizes = [hi - lo for lo, hi in rows]
    assert max(sizes) - min(sizes) <= batch  # balanced to a batch
    if count > -(-n // batch):
        assert min(sizes) == 0  # more shards than batches: some are empty


def test_merged_equals_single_process_bitwise(runs, tmp_path):
    out = tmp_path / "sharded.h5"
    _copy_shards(runs["out"], out)
    with h5py.File(shard_path(out, Shard(1, 3)), "r") as f:  # the skip is inside shard 1
        assert decode_attr(f.attrs["shard"])["rows"] == [8, 16]
        assert [s["id"] for s in decode_attr(f.attrs["skipped"])] == [BROKEN]
    assert main(["merge", "--out", str(out)]) == 0
    assert_same_file(out, runs["single"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sharded.h5", "sharded.h5.shards"]
    assert len(list(shards_dir(out).iterdir())) == 3  # kept without --remove-shards
    assert main(["merge", "--out", str(out), "--shards", "3", "--remove-shards"]) == 0
    assert not shards_dir(out).exists()
    assert_same_file(out, runs["single"])


def test_finished_shard_is_kept_and_a_killed_one_resumes(runs, capfd):
    # Beside the first run's out: its shards' data_root_relative attr holds for this out too.
    data, out = runs["data"], runs["root"] / "resumed.h5"
    _copy_shards(runs["out"], out)
    done = shard_path(out, Shard(0, 3))
    before = done.stat().st_mtime_ns
    assert extract_embeddings(R18, data, out, shard=Shard(0, 3), **KW) == done
    assert done.stat().st_mtime_ns == before  # complete and matching: not redone
    last = shard_path(out, Shard(2, 3))
    last.unlink()  # then re-made by a process killed after its first batch
    env = {**os.environ, "LINPROBE_TEST_KILL_SHARD": f"{out.name}:2:4"}
    code = ("import sys; from linprobe.features.extract import extract_embeddings as e; "
            "from linprobe.features.shards import Shard; "
            f"e({R18!r}, sys.argv[1], sys.argv[2], shard=Shard(2, 3), image_size=32, "
            f"batch_size={BATCH}, num_workers=0, on_error='skip', progress=False)")
    proc = subprocess.run([sys.executable, "-c", code, str(data), str(out)], env=env)
    assert proc.returncode == -9 and not last.exists()  # SIGKILLed after one batch
    capfd.readouterr()
    extract_embeddings(R18, data, out, shard=Shard(2, 3), **KW)
    assert "resuming" in capfd.readouterr().err
    merge_shards(out)
    assert_same_file(out, runs["single"])


def _copy_shards(src: Path, dst: Path, count: int = 3) -> None:
    shards_dir(dst).mkdir()
    for i in range(count):
        shutil.copy(shard_path(src, Shard(i, count)), shard_path(dst, Shard(i, count)))


def _craft(runs, tmp_path: Path, edit=None, drop: int | None = None) -> Path:
    """A copy of the 3 shards, shard 1's 'shard' attr edited by ``edit`` or shard ``drop``
    removed; returns the out path (no file there yet)."""
    out = tmp_path / "sharded.h5"
    _copy_shards(runs["out"], out)
    if drop is not None:
        shard_path(out, Shard(drop, 3)).unlink()
    if edit is not None:
        with h5py.File(shard_path(out, Shard(1, 3)), "r+") as f:
            edit(f.attrs)
    return out


def _set_shard(**changes):
    def edit(attrs):
        info = decode_attr(attrs["shard"])
        attrs["shard"] = encode_attr({**info, **changes})
    return edit


@pytest.mark.parametrize("edit, drop, match", [
    (None, 1, r"shard file .*sharded-00001-of-00003\.h5 is missing"),
    (_set_shard(key="0" * 64), None, r"another backbone, preprocessing, dataset"),
    (lambda a: a.__setitem__("batch_size", 8), None, r"disagrees with .* on batch_size"),
    (lambda a: a.__setitem__("backbone", "torchvision:resnet34:none"), None,
     r"disagrees .* on backbone"),
    (_set_shard(rows=[9, 16]), None, r"rows 8\.\.8 are in no shard \(a gap\)"),
    (_set_shard(rows=[7, 16]), None, r"rows 7\.\.7 are in two shards \(an overlap\)"),
    (_set_shard(total=30), None, r"is a shard of 30 rows"),
])
def test_merge_refuses_bad_shard_sets(runs, tmp_path, capsys, edit, drop, match):
    out = _craft(runs, tmp_path, edit, drop)
    assert main(["merge", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("linprobe: error: ") and "Traceback" not in err

    assert re.search(match, err), err
    assert "linprobe merge" in err or "linprobe extract" in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["sharded.h5.shards"]


def test_merge_refuses_a_tail_gap_and_unknown_counts(runs, tmp_path, capsys):
    out = tmp_path / "e.h5"
    _copy_shards(runs["out"], out)
    with h5py.File(shard_path(out, Shard(2, 3)), "r+") as f:
        info = decode_attr(f.attrs["shard"])
        f.attrs["shard"] = encode_attr({**info, "rows": [16, 20]})
    with pytest.raises(ValueError, match=r"rows 20\.\.21 are in no shard"):
        merge_shards(out)
    with pytest.raises(FileNotFoundError, match=r"no shard files of .*extract .*--shard I/N"):
        merge_shards(tmp_path / "other.h5")
    shutil.copy(shard_path(out, Shard(0, 3)), shard_path(out, Shard(0, 2)))
    assert main(["merge", "--out", str(out)]) == 2
    assert "several counts N ([2, 3]); pass --shards N" in capsys.readouterr().err
    assert not out.exists()


def test_shard_rows_are_written_in_order(runs):
    """The shard files hold their own rows only (ids are those of the single file's slice)."""
    single = h5py.File(runs["single"], "r")
    ids = single["ids"].asstr()[...]
    got = []
    for i in range(3):
        with h5py.File(shard_path(runs["out"], Shard(i, 3)), "r") as f:
            got += list(f["ids"].asstr()[...])
    single.close()
    assert got == list(ids) and len(ids) == N_FILES - 1
    assert np.all(np.diff([shard_rows(Shard(i, 3), N_FILES, BATCH)[0] for i in range(3)]) > 0)
