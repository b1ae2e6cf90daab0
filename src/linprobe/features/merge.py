"""``linprobe merge``: shard files (``features.shards``) -> the standard ``<out>.h5``, by copy.

The shards' rows are copied (not linked as HDF5 virtual datasets, which read many times slower)
into a temporary file beside ``out`` with the single-process writer's layout and chunking, which
is renamed to ``out`` once complete and fsynced. Refused before anything is written: a missing or
unfinished shard, shards of another run (their whole-run key or any attr that shapes the rows
differs) and rows that leave a gap or overlap. The merged attrs are the single-process ones:
the run-wide key as ``resume_key``, the skipped images of all shards in order, the compute time
summed, and a ``shards`` list of each shard's rows, seconds, device, creation time and threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from linprobe.features.shards import find_shards
from linprobe.features.store import decode_attr, encode_attr, partial_path

# Attrs that differ from shard to shard in a correct sharded run (merged separately below);
# every other attr must agree.
_PER_SHARD = frozenset({"shard", "resume_key", "seconds", "images_per_s", "resumed_from",
                        "created", "device", "skipped", "threads"})
_COPY_ROWS = 1 << 16  # rows per copied block: bounded memory whatever the shard size


def _fix(out: Path) -> str:
    return (f"re-run the shards with the same command and settings (`linprobe extract ... --out "
            f"{out} --shard I/N`), then merge again")


def _read_shard(path: Path, out: Path) -> dict[str, Any]:
    if not path.is_file():
        hint = " (its extraction has not finished)" if partial_path(path).exists() else ""
        raise FileNotFoundError(f"shard file {path} is missing{hint}; {_fix(out)}")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: decode_attr(v) for k, v in f.attrs.items()}
            rows = int(f["embeddings"].shape[0]), int(f["ids"].shape[0])
    except (OSError, KeyError) as exc:
        raise ValueError(f"shard file {path} cannot be read ({exc}); delete it and {_fix(out)}")
    info = attrs.get("shard")
    if not isinstance(info, dict) or rows[0] != rows[1]:
        raise ValueError(f"{path} is not a complete shard file of `linprobe extract --shard`; "
                         f"{_fix(out)}")
    return attrs


def check_shards(paths: Sequence[Path], out: Path) -> list[dict[str, Any]]:
    """The shards' attrs, after checking they are one run's and tile its rows exactly."""
    shards = [_read_shard(p, out) for p in paths]
    first = shards[0]
    for path, attrs in zip(paths[1:], shards[1:]):
        if attrs["shard"]["key"] != first["shard"]["key"]:
            raise ValueError(f"shard {path} was made with another backbone, preprocessing, "
                             f"dataset, device type or precision than {paths[0]}; {_fix(out)}")
        differ = sorted(k for k in (set(attrs) | set(first)) - _PER_SHARD
                        if attrs.get(k) != first.get(k))
        if differ:
            raise ValueError(f"shard {path} disagrees with {paths[0]} on {', '.join(differ)}; "
                             f"{_fix(out)}")
    total, pos = first["shard"]["total"], 0
    for path, attrs in sorted(zip(paths, shards), key=lambda s: s[1]["shard"]["rows"]):
        start, stop = attrs["shard"]["rows"]
        if attrs["shard"]["total"] != total:
            raise ValueError(f"shard {path} is a shard of {attrs['shard']['total']} rows, "
                             f"{paths[0]} of {total}; {_fix(out)}")
        if start != pos:
            problem = (f"rows {pos}..{start - 1} are in no shard (a gap)" if start > pos else
                       f"rows {start}..{pos - 1} are in two shards (an overlap)")
            raise ValueError(f"shard {path} holds rows {start}..{stop - 1} of {total}: "
                             f"{problem}; {_fix(out)}")
        pos = stop
    if pos != total:
        raise ValueError(f"the shards of {out} cover rows 0..{pos - 1} of {total}: rows "
                         f"{pos}..{total - 1} are in no shard (a gap); {_fix(out)}")
    return shards


def merge_shards(out: str | Path, count: int | None = None, *, remove: bool = False) -> Path:
    """Merge the ``count`` shard files of ``out`` (None: the one count present) into ``out``;
    with ``remove``, delete the shard files (and their folder when empty) afterwards."""
    out = Path(out)
    count, paths = find_shards(out, count)
    shards = check_shards(paths, out)
    tmp = out.with_name(f".{out.name}.merging-{os.getpid()}")
    try:
        _write(tmp, paths, shards)
        os.replace(tmp, out)  # atomic: readers see the old file or the complete new one
    finally:
        tmp.unlink(missing_ok=True)
    if remove:
        for p in paths:
            p.unlink()
        try:
            paths[0].parent.rmdir()
        except OSError:  # other files there (shards of another count, partial files)
            pass
    return out


def _write(tmp: Path, paths: Sequence[Path], shards: list[dict[str, Any]]) -> None:
    """Copy every shard's datasets into ``tmp`` (the single-process layout) and fsync it."""
    with h5py.File(paths[0], "r") as f0:
        dim = f0["embeddings"].shape[1]
        label_shape, label_dtype = f0["labels"].shape[1:], f0["labels"].dtype
        raw = {k: v for k, v in f0.attrs.items() if k not in _PER_SHARD}
    n = sum(s["shard"]["rows"][1] - s["shard"]["rows"][0] for s in shards)
    kept = []
    for p in paths:
        with h5py.File(p, "r") as f:
            kept.append(f["ids"].shape[0])
    rows, batch = sum(kept), int(shards[0].get("batch_size", 256))
    with h5py.File(tmp, "w") as g:
        emb = g.create_dataset("embeddings", shape=(rows, dim), maxshape=(None, dim),
                               dtype=np.float32, chunks=(min(batch, max(1, n)), dim))
        ids = g.create_dataset("ids", shape=(rows,), dtype=h5py.string_dtype("utf-8"))
        labels = g.create_dataset("labels", shape=(rows, *label_shape), dtype=label_dtype)
        split = g.create_dataset("split", shape=(rows,), dtype=np.uint8)
        at = 0
        for p, k in zip(paths, kept):
            with h5py.File(p, "r") as f:
                for a in range(0, k, _COPY_ROWS):
                    b = min(k, a + _COPY_ROWS)
                    emb[at + a:at + b] = f["embeddings"][a:b]
                    ids[at + a:at + b] = f["ids"].asstr()[a:b]
                    labels[at + a:at + b] = f["labels"][a:b]
                    split[at + a:at + b] = f["split"][a:b]
            at += k
        for k, v in raw.items():
            g.attrs[k] = v
        seconds = float(sum(s.get("seconds", 0.0) for s in shards))
        done = sum(s["shard"]["rows"][1] - s["shard"]["rows"][0] - s.get("resumed_from", 0)
                   for s in shards)
        merged = {
            "resume_key": shards[0]["shard"]["key"],  # the single-process run's
            "skipped": [x for s in shards for x in s.get("skipped", [])],
            "seconds": seconds,  # compute time over all shards
            "images_per_s": done / seconds if seconds > 0 else 0.0,  # per process
            "resumed_from": int(sum(s.get("resumed_from", 0) for s in shards)),
            "device": shards[0].get("device", ""),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "shards": [{"rows": s["shard"]["rows"], "seconds": s.get("seconds"),
                        "resumed_from": s.get("resumed_from"), "device": s.get("device"),
                        "created": s.get("created"), "threads": s.get("threads")} for s in shards],
        }
        for k, v in merged.items():
            g.attrs[k] = encode_attr(v)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())  # the renamed file must be complete, not just named
