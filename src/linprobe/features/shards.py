"""Shards: one contiguous block of a dataset's rows per process, on the single-process batch grid.

A shard spec ``I/N`` (0-based ``I``, ``0 <= I < N``) takes batches ``[I*K//N, (I+1)*K//N)`` of the
``K = ceil(rows / batch_size)`` batches a single process would run, so every batch a shard embeds
is one the single-process run embeds too (same images, same size): with the same thread count the
rows are bit-identical and :mod:`.merge` can concatenate them into the single-process file. A
shard may be empty (more shards than batches).

Shard ``I/N`` of ``<out>`` is written to ``<out>.shards/<stem>-IIIII-of-NNNNN.h5`` (through the
usual resumable ``.partial`` file); the folder ends in ``.shards``, not ``.h5``, so nothing that
lists ``*.h5`` embeddings files picks shards up. No torch here: the CLI parses specs with it.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_FIX = ("give --shard I/N with 0 <= I < N, 0-based: e.g. --shard 0/2 and --shard 1/2 split the "
        "data in two")
# Test hook: "<out file name>:<shard index>:<rows>" makes the process of that shard SIGKILL itself
# once a fresh (not resumed) session has written at least <rows> rows, so tests can kill a torchrun
# rank or a Ray task mid-shard at a known point. Unset (always, outside tests) it does nothing.
KILL_HOOK_ENV = "LINPROBE_TEST_KILL_SHARD"


@dataclass(frozen=True, order=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (0 <= self.index < self.count):
            raise ValueError(f"--shard {self.index}/{self.count} is out of range; {_FIX}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"I/N"`` -> Shard(I, N); ValueError naming --shard and the fix for anything else."""
    m = _SPEC.match(text)
    if not m:
        raise ValueError(f"--shard must look like I/N (two integers), got {text!r}; {_FIX}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise ValueError(f"--shard {text!r}: the shard count N must be at least 1; {_FIX}")
    return Shard(index, count)


def shard_rows(shard: Shard, n: int, batch_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``shard`` among ``n`` rows: whole batches of ``batch_size``
    (only the last shard's last batch may be short, as in the single-process run)."""
    batches = -(-n // batch_size)
    first = shard.index * batches // shard.count
    last = (shard.index + 1) * batches // shard.count
    return min(n, first * batch_size), min(n, last * batch_size)


def shards_dir(out: str | Path) -> Path:
    """The folder holding ``out``'s shard files."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def shard_path(out: str | Path, shard: Shard) -> Path:
    """Where shard ``shard`` of the embeddings file ``out`` is written."""
    out = Path(out)
    return shards_dir(out) / f"{out.stem}-{shard.index:05d}-of-{shard.count:05d}.h5"


def find_shards(out: str | Path, count: int | None = None) -> tuple[int, list[Path]]:
    """(N, the N shard paths of ``out`` in order) for ``count`` N, or the one N whose shard files
    lie in :func:`shards_dir` when ``count`` is None. Missing files are returned too: the merge
    names them."""
    out = Path(out)
    if count is None:
        pattern = re.compile(rf"^{re.escape(out.stem)}-\d{{5}}-of-(\d{{5}})\.h5$")
        folder = shards_dir(out)
        names = os.listdir(folder) if folder.is_dir() else []
        counts = sorted({int(m.group(1)) for m in map(pattern.match, names) if m})
        if not counts:
            raise FileNotFoundError(
                f"no shard files of {out} in {folder}; run `linprobe extract ... --out {out} "
                "--shard I/N` for every I first")
        if len(counts) > 1:
            raise ValueError(f"{folder} holds shards of several counts N ({counts}); pass "
                             "--shards N to say which to merge")
        count = counts[0]
    if count < 1:
        raise ValueError(f"--shards must be at least 1, got {count}")
    return count, [shard_path(out, Shard(i, count)) for i in range(count)]


def kill_hook(out: str | Path, shard: Shard) -> Callable[[int, int], None] | None:
    """The test hook for this shard (see ``KILL_HOOK_ENV``), or None: it is called after each
    batch with (row this session started at, rows processed)."""
    spec = os.environ.get(KILL_HOOK_ENV, "")
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != Path(out).name or parts[1] != str(shard.index):
        return None
    rows = int(parts[2])

    def hook(start: int, processed: int) -> None:
        if start == 0 and processed >= rows:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
