"""`torchrun --nproc-per-node 2 -m linprobe extract`: real torchrun, 2 CPU processes, gloo.

Each rank embeds its shard of a dataset that does not divide evenly (one unreadable image, left
out with on_error skip, inside rank 1's shard); rank 0 merges. A rank SIGKILLed mid-shard takes
the job down; the same command again resumes it, and the result equals a single process with
torchrun's thread count (OMP_NUM_THREADS=1) bit for bit. With more ranks than batches, rank 0's
shard is empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from linprobe.features.shards import KILL_HOOK_ENV, Shard, shard_path, shards_dir
from linprobe.features.store import partial_path
from linprobe.pipeline.cli import main
from tests.features.sharddata import EXTRACT_ARGS, assert_same_file, single_process, write_data

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "linprobe", "extract"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != KILL_HOOK_ENV}
    return {**env, "OMP_NUM_THREADS": "1", **extra}  # torchrun's default for 2+ processes


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("torchrun") / "data")


@pytest.mark.slow  # two torchrun jobs of 2 processes + a single process: minutes on 2 cores
def test_rank_killed_mid_shard_then_restarted_equals_single_process(data, tmp_path):
    single = single_process(data, tmp_path / "single.h5")
    out = tmp_path / "t.h5"
    cmd = [*TORCHRUN, *EXTRACT_ARGS, "--data", str(data), "--out", str(out)]
    # Rank 1 (rows 12..21, 3 batches) SIGKILLs itself after its first batch.
    killed = _run(cmd, **{KILL_HOOK_ENV: f"{out.name}:1:4"})
    assert killed.returncode != 0 and not out.exists()
    assert partial_path(shard_path(out, Shard(1, 2))).exists()
    done = _run(cmd)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stderr and "at sample 4/10" in done.stderr
    assert f"embeddings written to {out}" in done.stdout
    assert_same_file(out, single)
    assert not shards_dir(out).exists()  # rank 0 removed the shards after merging


@pytest.mark.slow  # a torchrun job of 2 processes + a single process
def test_rank_with_an_empty_shard(data, tmp_path):
    # One batch of 32 for 22 files: rank 0's shard is empty, rank 1 embeds everything.
    single = single_process(data, tmp_path / "single.h5", "--batch-size", "32")
    out = tmp_path / "t.h5"
    proc = _run([*TORCHRUN, *EXTRACT_ARGS, "--batch-size", "32", "--data", str(data),
                 "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert_same_file(out, single)


def test_shard_flag_is_refused_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")  # what torchrun sets in each rank
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["extract", "--backbone", "x", "--data", "d", "--out", "t.h5",
                 "--shard", "0/2"]) == 2
    assert "linprobe: error: --shard 0/2 cannot be combined with torchrun" in \
        capsys.readouterr().err
