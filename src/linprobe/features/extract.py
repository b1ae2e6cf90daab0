"""The extraction engine: dataset + backbone -> one HDF5 embeddings file, streamed and resumable.

Hot path: whole batches are decoded and resized to (B, crop, crop, 3) uint8 (``features.loader``:
worker processes on CUDA, a thread pool between forward passes on CPU); the main process
normalises each batch on the device, runs the model under ``torch.inference_mode``
(``features.forward``: channels_last, BatchNorm folded, cache-sized slices on CPU, autocast) and
appends each batch to ``<out>.partial``, which is renamed to ``out`` when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from linprobe.features.backbones.preprocess import RESIZE_MODES
from linprobe.features.croploss import crop_loss_summary, crop_warning, read_sizes, sample_paths
from linprobe.features.datasets import ImageDataset, load_dataset
from linprobe.features.forward import (
    PRECISIONS,
    embed,
    forward_rows,
    normaliser,
    prepare_model,
)
from linprobe.features.images import ImageDecodeError
from linprobe.features.loader import DecodedBatches, decode_pool
from linprobe.features.writer import EmbeddingWriter

ON_ERROR = ("fail", "skip")
_PRECISION_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_SKIP_FIX = ("fix or remove the file, or re-run with --on-error skip (params: extract.on_error: "
             "skip) to leave unreadable images out")
_FORMAT = 1  # bump when the meaning of stored embeddings changes: old partial files are discarded


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; explicit names are checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'. Got {device!r} "
            "instead."
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use 'auto'")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bfloat16 (or float16) on CUDA, float32 elsewhere; aliases fp32/bf16/fp16."""
    name = _PRECISION_ALIASES.get(precision, precision)
    if name == "auto":
        if device.type != "cuda":
            return "float32"
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if name not in PRECISIONS:
        raise ValueError(
            f"The 'precision' parameter must be one of {['auto', *PRECISIONS]}. "
            f"Got {precision!r} instead."
        )
    return name


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


def seeded_backbone(spec: str, *, image_size: int | None, layer: str | None, seed: int) -> Any:
    """``load_backbone`` with torch's RNG seeded, so random-init (``:none``) weights are the same
    in every process: a resumed run must continue with the very same network."""
    from linprobe.features.backbones import load_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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


def _check_args(batch_size: int, num_workers: int | None, on_error: str, resize: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"The 'batch_size' parameter must be an int >= 1. Got {batch_size!r} instead."
        )
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
        raise ValueError(
            f"The 'num_workers' parameter must be None or an int >= 0. Got {num_workers!r} "
            "instead."
        )
    if on_error not in ON_ERROR:
        raise ValueError(
            f"The 'on_error' parameter must be one of {list(ON_ERROR)}. Got {on_error!r} instead."
        )
    if resize not in RESIZE_MODES:
        raise ValueError(
            f"The 'resize' parameter must be one of {list(RESIZE_MODES)}. Got {resize!r} instead."
        )


def extract_embeddings(
    backbone: str,
    data: str | Path,
    out: str | Path,
    *,
    image_size: int | None = None,
    resize: str = "crop",
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int | None = None,
    on_error: str = "fail",
    precision: str = "auto",
    layer: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Embed every image of ``data`` (folder or CSV manifest) with ``backbone``; write ``out``.

    Writes ``out + '.partial'`` batch by batch and renames it when done; a matching partial file
    from an interrupted run is resumed, a non-matching one discarded. ``resize``: how non-square
    images become square inputs, 'crop' (the weights' protocol), 'pad' (letterbox the whole image
    in the weights' mean colour) or 'stretch'; the centre crop's loss is measured either way
    (``crop_loss`` attr; see ``features.croploss``), with a warning when cropping cuts many
    images. ``on_error='skip'`` leaves unreadable images out (recorded in the ``skipped`` attr); ``'fail'`` raises naming the file.
    ``seed`` seeds the split (when the data has none) and the weights of random-init backbones.
    ``num_workers=None`` picks a count for the cores and device (see default_num_workers).
    Returns ``Path(out)``.
    """
    _check_args(batch_size, num_workers, on_error, resize)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    ds = load_dataset(data, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    ds.scan.log()  # files left out, links reached twice, classes too small for val/test
    bb = seeded_backbone(backbone, image_size=image_size, layer=layer, seed=seed)
    pre = replace(bb.preprocess, resize_mode=resize)
    # Measured (from headers) before any work, so a crop that cuts images is flagged at once.
    crop_loss = crop_loss_summary(read_sizes(sample_paths(ds.paths())), pre.resize, pre.crop,
                                  n_images=len(ds))
    warning = crop_warning(crop_loss, resize)
    if warning:
        print(f"linprobe: warning: {warning}", file=sys.stderr)
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
    resume_key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
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
        "batch_size": batch_size,
        **ds.scan.attrs(),  # left_out, left_out_total
    }
    with EmbeddingWriter(
        out,
        ids=ds.ids,
        labels=ds.labels,
        split=ds.split,
        embed_dim=bb.embed_dim,
        resume_key=resume_key,
        attrs=attrs,
        chunk_rows=batch_size,
        sources=ds.paths(),  # their stats tell a resume which images changed since
    ) as writer:
        if on_error == "fail" and writer.skipped:
            first = writer.skipped[0]
            raise ImageDecodeError(ds.paths()[first["index"]], first["reason"], _SKIP_FIX)
        # Preparing the model (BatchNorm folding) is part of loading it: outside the timed loop.
        model = prepare_model(bb.model, dev, int(pre.crop)) if writer.start < len(ds) else None
        t0 = time.perf_counter()
        _run(model, ds, writer, pre, dev, prec, batch_size, num_workers, on_error, progress)
        seconds = time.perf_counter() - t0
        done = writer.n - writer.start
        return writer.finish(
            {
                "seconds": seconds,
                "images_per_s": done / seconds if seconds > 0 else 0.0,
                "resumed_from": writer.start,
                "crop_loss": crop_loss,
                "versions": _versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )


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
    ds: ImageDataset,
    writer: EmbeddingWriter,
    pre: Any,
    dev: torch.device,
    prec: str,
    batch_size: int,
    num_workers: int | None,
    on_error: str,
    progress: bool,
) -> None:
    """Set up decoding (worker processes, or a thread pool in this process) and run the loop."""
    start, n = writer.start, len(ds)
    if start >= n:
        return
    paths = ds.paths()
    workers = num_workers
    if workers is None:
        workers = default_num_workers(n - start, batch_size, dev)
    # In-process loading decodes each batch on a thread pool as wide as torch's intra-op pool.
    threads = torch.get_num_threads() if workers == 0 else 1
    with decode_pool(threads) as pool:
        batches = DecodedBatches(paths[start:], batch_size, pre, pool, threads)
        loader = DataLoader(
            batches,
            batch_size=None,  # items are whole batches
            shuffle=False,
            num_workers=workers,
            pin_memory=dev.type == "cuda",
        )
        rows = forward_rows(model, dev, pre.crop, batch_size)
        with cudnn_autotune(dev):
            _loop(model, loader, paths, writer, pre, dev, prec, rows, on_error, progress)


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
) -> None:
    """Normalise -> forward (``rows`` images per call) -> append for each batch ``loader``
    yields, from writer.start."""
    start, n = writer.start, len(paths)
    scale, shift = normaliser(pre.mean, pre.std, dev)
    bar = tqdm(total=n, initial=start, unit="img", desc=writer.path.stem, disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    pos = start
    try:
        with torch.inference_mode():
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
                bar.update(b)
    except KeyboardInterrupt:
        print(
            f"\nlinprobe: interrupted after {writer.processed}/{n} images; "
            f"re-run the same command to resume from {writer.partial}",
            file=sys.stderr,
        )
        raise
    finally:
        bar.close()
