"""The extraction engine: dataset + backbone -> one HDF5 embeddings file, streamed and resumable.

Hot path: whole batches are decoded and resized to (B, crop, crop, 3) uint8 (``features.loader``:
worker processes on CUDA, a thread pool between forward passes on CPU); the main process
normalises each batch on the device, runs the model under ``torch.inference_mode``
(``features.forward``: channels_last, BatchNorm folded, cache-sized slices on CPU, autocast) and
appends each batch to ``<out>.partial``, which is renamed to ``out`` when complete. The threads
of each batch (forward and decoding) follow ``threads`` (``linprobe.threads``: by default the
cores other processes leave free, re-read as the run goes).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from linprobe.features.config import (
    DEFAULT_INIT_SEED,
    ExtractConfig,
    SplitConfig,
    check_init_seed,
    is_random_init,
    with_options,
)
from linprobe.features.croploss import crop_loss_summary, crop_warning, read_sizes, sample_paths
from linprobe.features.datasets import load_dataset
from linprobe.features.forward import embed, forward_rows, normaliser, prepare_model
from linprobe.features.images import ImageDecodeError
from linprobe.features.loader import DecodedBatches, decode_pool
from linprobe.features.shards import Shard, kill_hook, shard_path, shard_rows
from linprobe.features.store import read_attrs
from linprobe.features.writer import EmbeddingWriter
from linprobe.threads import ThreadController, limit_threads

_SKIP_FIX = ("fix or remove the file, or re-run with --on-error skip (params: extract.on_error: "
             "skip) to leave unreadable images out")
_FORMAT = 1  # bump when the meaning of stored embeddings changes: old partial files are discarded


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu (``device`` validated by ExtractConfig)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use 'auto'")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bfloat16 (or float16) on CUDA, float32 elsewhere (validated by ExtractConfig)."""
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def default_num_workers(n_images: int, batch_size: int, device: torch.device) -> int:
    """Decoding worker processes: on CUDA most cores (decoding overlaps the GPU's work), unless
    there are only a couple of batches (start-up costs more than it saves); on CPU none: the
    main process decodes each batch on all cores between forward passes (see
    ``features.loader``), since workers would take cores from the forward pass."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if device.type != "cuda" or n_images <= 2 * batch_size:
        return 0
    return max(1, min(8, cores - 1))


def seeded_backbone(spec: str, *, image_size: int | None, layer: str | None,
                    init_seed: int | None) -> Any:
    """``load_backbone`` with torch's RNG seeded by ``init_seed`` (None: DEFAULT_INIT_SEED), so
    random-init (``:none``) weights are the same in every process: a resumed run must continue
    with the very same network. Refuses an ``init_seed`` for a pretrained spec."""
    from linprobe.features.backbones import load_backbone

    check_init_seed(spec, init_seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEFAULT_INIT_SEED if init_seed is None else init_seed)
        return load_backbone(spec, image_size=image_size, layer=layer)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer: what the resume check trusts, not the weights' name."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import h5py
    import PIL
    import torchvision

    from linprobe import __version__ as linprobe_version

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "h5py": h5py.__version__,
        "linprobe": linprobe_version,
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def extract_embeddings(
    backbone: str,
    data: str | Path,
    out: str | Path,
    config: ExtractConfig | None = None,
    split: SplitConfig | None = None,
    *,
    progress: bool = True,
    shard: Shard | None = None,
    **options: Any,
) -> Path:
    """Embed every image of ``data`` (folder or CSV manifest) with ``backbone``; write ``out``.

    ``config`` (default ``ExtractConfig()``) says how to run the backbone, ``split`` (default
    ``SplitConfig()``) how to split samples the data assigns to no split; ``options``: fields of
    either by name, replacing theirs (``extract_embeddings(b, d, o, batch_size=8)``).

    Writes ``out + '.partial'`` batch by batch and renames it when done; a matching partial file
    from an interrupted run is resumed, a non-matching one discarded. ``resize``: how non-square
    images become square inputs, 'crop' (the weights' protocol), 'pad' (letterbox the whole image
    in the weights' mean colour) or 'stretch'; the centre crop's loss is measured either way
    (``crop_loss`` attr; see ``features.croploss``), with a warning when cropping cuts many
    images. ``on_error='skip'`` leaves unreadable images out (recorded in the ``skipped`` attr);
    ``'fail'`` raises naming the file. ``num_workers=None`` picks a count for the cores and
    device (see default_num_workers). Returns ``Path(out)``.

    ``shard``: embed only that shard's rows (``features.shards``: whole batches of the
    single-process grid) into ``shard_path(out, shard)``, its own resumable file keyed also by
    its rows; a complete shard file with that key is kept as it is. Returns the shard's path.
    """
    cfg, sp = with_options(config or ExtractConfig(), split or SplitConfig(), options)
    check_init_seed(backbone, cfg.init_seed)  # before any work
    dev = resolve_device(cfg.device)
    prec = resolve_precision(cfg.precision, dev)
    ds = load_dataset(data, val_fraction=sp.val_fraction, test_fraction=sp.test_fraction,
                      split_seed=sp.split_seed)
    ds.scan.log()  # files left out, links reached twice, classes too small for val/test
    bb = seeded_backbone(backbone, image_size=cfg.image_size, layer=cfg.layer,
                         init_seed=cfg.init_seed)
    pre = replace(bb.preprocess, resize_mode=cfg.resize)
    # Measured (from headers) before any work, so a crop that cuts images is flagged at once.
    crop_loss = crop_loss_summary(read_sizes(sample_paths(ds.paths())), pre.resize, pre.crop,
                                  n_images=len(ds))
    warning = crop_warning(crop_loss, cfg.resize)
    if warning:
        print(f"linprobe: warning: {warning}", file=sys.stderr)
    n_all = len(ds)
    lo, hi = shard_rows(shard, n_all, cfg.batch_size) if shard is not None else (0, n_all)
    paths = ds.paths()[lo:hi]
    identity = {
        "format": _FORMAT,
        "backbone": bb.spec,
        "weights": bb.weights,
        "weights_sha256": weights_digest(bb.model),
        "layer": bb.layer,
        "preprocess": pre.to_dict(),
        "dataset_fingerprint": ds.fingerprint(),
        "device_type": dev.type,
        "precision": prec,
    }
    resume_key = _key(identity)
    target, whole_key = Path(out), resume_key
    if shard is not None:  # keyed by its rows too: a shard of another grid is never resumed
        target, resume_key = shard_path(out, shard), _key({**identity, "rows": [lo, hi, n_all]})
        if _finished(target, resume_key):
            return target  # done by an earlier run (a restarted job, a retried task)
    attrs = {
        "backbone": bb.spec,
        "weights": bb.weights,
        "preprocess": pre.to_dict(),
        "image_size": int(pre.crop),
        "embed_dim": int(bb.embed_dim),
        "num_params": int(bb.num_params),
        "class_names": ds.class_names,
        "task": ds.task,
        "dataset_fingerprint": identity["dataset_fingerprint"],
        "data_root": str(ds.root),
        # So the report finds the images after the repo (data and artifacts together) moves.
        "data_root_relative": os.path.relpath(ds.root, Path(out).resolve().parent),
        "layer": bb.layer or "penultimate",
        "weights_sha256": identity["weights_sha256"],
        "device": _device_name(dev),
        "precision": prec,
        "batch_size": cfg.batch_size,
        # The seeds by name; the resume key holds their effect instead (the split codes in the
        # dataset fingerprint, the weights' digest), so a seed that changes nothing keeps a resume.
        "split_seed": sp.split_seed,
        **({"init_seed": DEFAULT_INIT_SEED if cfg.init_seed is None else cfg.init_seed}
           if is_random_init(backbone) else {}),
        **ds.scan.attrs(),  # left_out, left_out_total
        # What `linprobe merge` checks and removes: rows [start, stop) of total, the whole key.
        **({"shard": {"index": shard.index, "count": shard.count, "rows": [lo, hi],
                      "total": n_all, "key": whole_key}} if shard is not None else {}),
    }
    with EmbeddingWriter(
        target,
        ids=ds.ids[lo:hi],
        labels=ds.labels[lo:hi],
        split=ds.split[lo:hi],
        embed_dim=bb.embed_dim,
        resume_key=resume_key,
        attrs=attrs,
        chunk_rows=cfg.batch_size,
        sources=paths,  # their stats tell a resume which images changed since
    ) as writer:
        if cfg.on_error == "fail" and writer.skipped:
            first = writer.skipped[0]
            raise ImageDecodeError(paths[first["index"]], first["reason"], _SKIP_FIX)
        # Made before the model is prepared, so that its first reading of the free cores
        # (before the first batch) spans that time instead of finding no window yet.
        threads = ThreadController(cfg.threads, unit="img")
        # Preparing the model (BatchNorm folding) is part of loading it: outside the timed loop.
        model = prepare_model(bb.model, dev, int(pre.crop)) if writer.start < len(paths) else None
        hook = kill_hook(out, shard) if shard is not None else None
        t0 = time.perf_counter()
        _run(model, paths, writer, pre, dev, prec, cfg, progress, threads, hook)
        seconds = time.perf_counter() - t0
        done = writer.n - writer.start
        return writer.finish(
            {
                "seconds": seconds,
                "images_per_s": done / seconds if seconds > 0 else 0.0,
                "resumed_from": writer.start,
                # Setting, cores available, batches run per thread count, their img/s.
                "threads": threads.record(),
                "crop_loss": crop_loss,
                "versions": _versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )


def _key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _finished(path: Path, key: str) -> bool:
    """Whether ``path`` is a complete file written with resume key ``key`` (an unreadable one
    is not: the writer replaces it)."""
    try:
        return path.is_file() and read_attrs(path).get("resume_key") == key
    except OSError:
        return False


@contextmanager
def cudnn_autotune(dev: torch.device) -> Iterator[None]:
    """cuDNN benchmarks kernels for this run's fixed input size (on CUDA); the caller's
    ``torch.backends.cudnn.benchmark`` is restored on exit, also after an error."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = saved or dev.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def _run(
    model: torch.nn.Module | None,
    paths: list[Path],
    writer: EmbeddingWriter,
    pre: Any,
    dev: torch.device,
    prec: str,
    cfg: ExtractConfig,
    progress: bool,
    threads: ThreadController,
    after_batch: Callable[[int, int], None] | None = None,
) -> None:
    """Set up decoding (worker processes, or a thread pool in this process) and run the loop
    over ``paths`` (the rows the writer holds)."""
    start, n = writer.start, len(paths)
    if start >= n:
        return
    batch_size, workers = cfg.batch_size, cfg.num_workers
    if workers is None:
        workers = default_num_workers(n - start, batch_size, dev)
    # In-process loading decodes each batch on a thread pool as wide as the most threads the
    # forward may get; each batch is split into as many tasks as it gets now (``_loop``).
    width = threads.threads if workers == 0 else 1
    with decode_pool(width) as pool:
        batches = DecodedBatches(paths[start:], batch_size, pre, pool, width)
        loader = DataLoader(
            batches,
            batch_size=None,  # items are whole batches
            shuffle=False,
            num_workers=workers,
            pin_memory=dev.type == "cuda",
        )
        rows = forward_rows(model, dev, pre.crop, batch_size)
        with cudnn_autotune(dev):
            _loop(model, loader, paths, writer, pre, dev, prec, rows, cfg.on_error, progress,
                  threads, batches, after_batch)


def _loop(
    model: torch.nn.Module,
    loader: DataLoader,
    paths: list[Path],
    writer: EmbeddingWriter,
    pre: Any,
    dev: torch.device,
    prec: str,
    rows: int,
    on_error: str,
    progress: bool,
    threads: ThreadController,
    batches: DecodedBatches,
    after_batch: Callable[[int, int], None] | None = None,
) -> None:
    """Normalise -> forward (``rows`` images per call) -> append for each batch ``loader``
    yields, from writer.start. ``threads`` sets the threads of each batch (forward and decoding
    tasks) and observes its rate; the bar shows the rate and ``threads.postfix()``."""
    start, n = writer.start, len(paths)
    scale, shift = normaliser(pre.mean, pre.std, dev)
    bar = tqdm(total=n, initial=start, unit="img", desc=writer.path.stem, disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    pos = start
    width = batches.threads
    k = threads.choose()
    batches.threads = min(k, width)
    try:
        with torch.inference_mode(), limit_threads(k):
            threads.start_units()
            for x, errors in loader:
                b = x.shape[0]
                skipped: list[dict[str, Any]] = []
                if any(errors):
                    bad = [j for j, e in enumerate(errors) if e]
                    if on_error == "fail":
                        raise ImageDecodeError(paths[pos + bad[0]], errors[bad[0]], _SKIP_FIX)
                    skipped = [{"index": pos + j, "reason": errors[j]} for j in bad]
                    keep = torch.ones(b, dtype=torch.bool)
                    keep[bad] = False
                    x = x[keep]
                emb = embed(model, x, rows, dev, prec, scale, shift) if len(x) else None
                if emb is not None and not np.isfinite(emb).all():
                    raise FloatingPointError(
                        f"non-finite embeddings in images {pos}..{pos + b - 1} with precision "
                        f"{prec!r}; re-run with precision='float32'"
                    )
                block = emb if emb is not None else np.empty((0, writer.embed_dim), np.float32)
                writer.append(block, processed=pos + b, skipped=skipped)
                pos += b
                k = threads.unit_done(b, k)  # decoding + forward + append; the next batch's k
                batches.threads = min(k, width)
                bar.set_postfix_str(threads.postfix(), refresh=False)
                bar.update(b)
                if after_batch is not None:
                    after_batch(start, pos)
    except KeyboardInterrupt:
        print(
            f"\nlinprobe: interrupted after {writer.processed}/{n} images; "
            f"re-run the same command to resume from {writer.partial}",
            file=sys.stderr,
        )
        raise
    finally:
        bar.close()
