"""``torchrun --nproc-per-node N -m linprobe extract ...``: one shard per rank, rank 0 merges.

Each rank embeds shard ``RANK/WORLD_SIZE`` (``features.shards``: whole batches of the
single-process grid, so no DistributedSampler and its duplicate padding) on ``cuda:LOCAL_RANK``
when CUDA is used, else on the CPU; the ranks share no tensors, so the only collective is one
gloo barrier after the shards (``monitored_barrier``: a rank that never arrives is named).
Rank 0 then merges the shard files into ``--out`` and removes them. A rank that dies takes the
job down (torchrun stops the others); the same command again resumes every unfinished shard
from its partial file and keeps the finished ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from linprobe.features.config import ExtractConfig, SplitConfig
from linprobe.features.shards import Shard


class ShardWaitError(ValueError):
    """Rank 0 waited ``--wait-timeout`` seconds for other ranks' shards in vain."""


def torchrun_shard() -> Shard | None:
    """This process's shard RANK/WORLD_SIZE when torchrun (or any launcher setting RANK and
    WORLD_SIZE) started 2+ processes; None otherwise. No torch import."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world < 2:
        return None
    return Shard(int(os.environ["RANK"]), world)


def rank_device(device: str, local_rank: int) -> str:
    """``cuda:LOCAL_RANK`` for 'auto' or 'cuda' when CUDA is available; ``device`` otherwise
    (an explicit 'cuda:N' or 'cpu' is the user's choice)."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device


def extract_on_ranks(backbone: str, data: str | Path, out: str | Path, config: ExtractConfig,
                     split: SplitConfig, *, timeout_s: float,
                     claim: Callable[[], AbstractContextManager[Any]] = nullcontext,
                     **kw: Any) -> Path | None:
    """This rank's shard of ``out`` (written inside ``claim()``: the CLI's output lock); on rank
    0, once every rank is done, the merged ``out`` (returned; None on the other ranks)."""
    import torch.distributed as dist

    from linprobe.features.extract import extract_embeddings

    shard = torchrun_shard()
    if shard is None:
        raise RuntimeError("extract_on_ranks needs RANK and WORLD_SIZE >= 2 (run it by torchrun)")
    local = int(os.environ.get("LOCAL_RANK", shard.index))
    config = replace(config, device=rank_device(config.device, local))
    dist.init_process_group("gloo", rank=shard.index, world_size=shard.count,
                            timeout=timedelta(seconds=timeout_s))
    try:
        with claim():
            extract_embeddings(backbone, data, out, config, split, shard=shard,
                               progress=shard.index == 0, **kw)
        try:
            # Rank 0 waits for every other rank's "done"; no tensor crosses ranks.
            dist.monitored_barrier(timeout=timedelta(seconds=timeout_s), wait_all_ranks=True)
        except RuntimeError as exc:
            raise ShardWaitError(
                f"rank {shard.index}: not every rank finished its shard of {out} within "
                f"--wait-timeout {timeout_s:g} s ({exc}); re-run the same command to resume "
                "the unfinished shards, or raise --wait-timeout") from None
        if shard.index != 0:
            return None
        return _merge(out, shard.count)
    finally:
        dist.destroy_process_group()


def _merge(out: str | Path, count: int) -> Path:
    """Merge under the lock of ``out`` (as `linprobe merge` does), then drop the shards."""
    import argparse

    from linprobe.features.merge import merge_shards
    from linprobe.pipeline.outputs import claim_outputs

    with claim_outputs("merge", argparse.Namespace(out=Path(out))):
        return merge_shards(out, count, remove=True)
