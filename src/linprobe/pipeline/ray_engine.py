"""``--engine ray`` (``extract.engine: ray``): one Ray task per shard, then the merge.

Each task runs ``extract_embeddings(..., shard=I/N)`` on a Ray worker (``num_gpus=1`` when the
extraction uses CUDA, so Ray gives it a GPU of its own; on CPU each task gets an equal share of
the cores) and writes its shard file next to ``--out``, which must therefore be on storage all
nodes share. A task whose worker dies (a node lost, OOM, a kill) is retried up to
``max_retries`` times and resumes its shard's partial file; errors of the extraction itself (an
unreadable image with on_error fail, bad settings) are not retried and end the run with their
own message. The driver then merges the shards into ``--out`` and removes them, so DVC sees only
the merged file. Without an address it joins ``RAY_ADDRESS`` when set, else starts a local Ray
instance on this machine's cores (and stops it afterwards). Ray is imported only here: the
default engine never loads it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from linprobe.features.config import ExtractConfig, SplitConfig
from linprobe.features.shards import Shard

_INSTALL = "install it with `pip install 'linprobe[ray]'`, or use --engine local"
MAX_RETRIES = 3  # per task, for worker deaths only
_PROBE_S = 10.0  # seconds to wait for the cluster's port to accept a connection


def _extract_shard(backbone: str, data: str, out: str, config: ExtractConfig,
                   split: SplitConfig, shard: Shard) -> str:
    """The task body: one shard file (resumed, or kept when already complete)."""
    from linprobe.features.extract import extract_embeddings

    return str(extract_embeddings(backbone, data, out, config, split, shard=shard,
                                  progress=False))


def _connect(address: str | None) -> bool:
    """Join the cluster (or start a local instance); whether this call started Ray."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"--engine ray needs the ray package, which is not installed; "
                         f"{_INSTALL}") from None
    if ray.is_initialized():  # the caller's own session (a notebook, a test)
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    where = f"--ray-address {address}" if address else "RAY_ADDRESS"
    try:
        _probe(address)
        ray.init(address=address, log_to_driver=True)
    except (ConnectionError, OSError) as exc:
        raise ValueError(f"{where}: no Ray cluster answers there ({exc}); start one with `ray "
                         "start --head` on its head node and pass that node's address, or drop "
                         "the address (and unset RAY_ADDRESS) to run a local instance") from None
    return True


def _probe(address: str | None) -> None:
    """Raise OSError at once when ``host:port`` refuses connections: ray.init would retry for
    minutes. ('auto', or no address, is left to Ray, which answers at once.)"""
    if not address or address == "auto" or ":" not in address:
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise OSError(f"{address!r} is not host:port")
    with socket.create_connection((host, int(port)), timeout=_PROBE_S):
        pass


def _uses_cuda(device: str) -> bool:
    import ray

    if device.startswith("cuda"):
        return True
    return device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1


def default_shards(cuda: bool) -> int:
    """One shard per GPU of the cluster with CUDA, else one per node."""
    import ray

    if cuda:
        return max(1, int(ray.cluster_resources().get("GPU", 0)))
    return max(1, sum(1 for node in ray.nodes() if node.get("Alive")))


def extract_on_ray(backbone: str, data: str | Path, out: str | Path, config: ExtractConfig,
                   split: SplitConfig, *, shards: int | None = None, address: str | None = None,
                   max_retries: int = MAX_RETRIES) -> Path:
    """Embed ``data`` with ``backbone`` into ``out`` as ``shards`` Ray tasks, then merge."""
    from linprobe.features.merge import merge_shards

    started = _connect(address)
    import ray

    try:
        cuda = _uses_cuda(config.device)
        n = shards or default_shards(cuda)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // n) if not cuda else 1
        task = ray.remote(_extract_shard).options(
            num_gpus=1 if cuda else 0, num_cpus=cpus, max_retries=max_retries,
            retry_exceptions=False)
        # Absolute paths: workers may run in other working directories.
        args: tuple[Any, ...] = (backbone, str(Path(data).resolve()), str(Path(out).resolve()),
                                 config, split)
        refs = [task.remote(*args, Shard(i, n)) for i in range(n)]
        try:
            ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, (ValueError, FileNotFoundError, LookupError)):
                raise cause from None  # the extraction's own message (bad data or settings)
            raise
        return merge_shards(out, n, remove=True)
    finally:
        if started:
            ray.shutdown()
