"""The loading side of extraction: files -> (B, crop, crop, 3) uint8 batches (centre-cropped,
letterboxed or stretched: ``Preprocess.resize_mode``).

An item of :class:`DecodedBatches` is a whole batch, decoded straight into one preallocated
tensor (no per-image tensors to collate: the DataLoader runs with ``batch_size=None``). Batches
are uint8 (4x less inter-process traffic than float) in HWC order, which is what the
antialiased resize produces anyway: (B, H, W, 3) permuted to (B, 3, H, W) is already
channels_last, so no layout copy is ever made. Normalisation happens once per batch in the main
process. Resizing runs on uint8 tensors with antialiasing (torchvision v2), which is faster
than PIL's resize and PIL's arithmetic at these sizes.

On CUDA, DataLoader worker processes decode whole batches while the GPU works. On CPU the engine
decodes in the main process instead (``num_workers=0``), each batch spread over a thread pool
sized to the cores, between forward passes: Pillow and the resize release the GIL, so decoding
uses every core and never competes with the forward's threads (a worker process running
alongside the forward pre-empts one of its OpenMP threads and the others wait at the barrier).
One task per thread, not one per image: per-image tasks and collation cost more CPU time per
image. The decoding threads run torch single-threaded: otherwise each opens its own OpenMP team
for the resize, whose threads spin after it and slow the forward. (The measurements behind
these choices: benchmarks/results/README.md.)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.images import ImageDecodeError, open_rgb

_STRIP_RATIO = 32  # crop mode: strips whose resized long side exceeds 32 crops are trimmed first


def to_input(
    image: np.ndarray,
    resize: int,
    crop: int,
    interpolation: str = "bilinear",
    *,
    mode: str = "crop",
    fill: tuple[int, int, int] = (0, 0, 0),
) -> torch.Tensor:
    """(H, W, 3) uint8 -> (crop, crop, 3) uint8 (see ``RESIZE_MODES``). crop: short side to
    ``resize``, centre crop; pad: long side to ``crop``, centred on a ``fill``-coloured square;
    stretch: to crop x crop."""
    x = torch.from_numpy(image).permute(2, 0, 1)
    interp = InterpolationMode(interpolation)
    if mode == "stretch":
        return F.resize(x, [crop, crop], interpolation=interp, antialias=True).permute(1, 2, 0)
    if mode == "pad":
        h, w = image.shape[:2]
        # Long side to crop, the short side keeping the aspect ratio (at least 1 px); [h, w].
        short = max(1, round(crop * min(h, w) / max(h, w)))
        size = [crop, short] if h >= w else [short, crop]
        x = F.resize(x, size, interpolation=interp, antialias=True)
        out = torch.empty((crop, crop, 3), dtype=torch.uint8)
        out[:] = torch.tensor(fill, dtype=torch.uint8)
        top, left = (crop - size[0]) // 2, (crop - size[1]) // 2
        out[top : top + size[0], left : left + size[1]] = x.permute(1, 2, 0)
        return out
    if mode != "crop":
        raise ValueError(f"unknown resize mode {mode!r}; expected crop, pad or stretch")
    h, w = image.shape[:2]
    short, long = min(h, w), max(h, w)
    if long * resize > _STRIP_RATIO * crop * short:
        # A strip would be resized whole first (1 x 100,000 px -> 128 x 12.8M, 4.9 GB): keep only
        # the centre the crop can see (4x its extent). The crop window may move by up to one
        # source pixel; ordinary images never come here.
        keep = min(long, math.ceil(4 * short * crop / resize) + 2)
        off = (long - keep) // 2
        x = x[:, off : off + keep] if h > w else x[:, :, off : off + keep]
    x = F.resize(x, resize, interpolation=interp, antialias=True)
    # The uint8 antialias kernel returns channels-last strides: the HWC view is a cheap copy.
    return F.center_crop(x, [crop, crop]).permute(1, 2, 0)


@contextmanager
def decode_pool(threads: int) -> Iterator[Executor | None]:
    """A pool of ``threads`` decoding threads, each running torch ops single-threaded; None
    (decode in the calling thread) when ``threads`` < 2."""
    if threads < 2:
        yield None
        return
    n = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            yield pool
    finally:
        # set_num_threads(1) in a pool thread also lowers the process-wide count that threads
        # started later begin with (this thread's own count is untouched): put it back.
        torch.set_num_threads(n)


class DecodedBatches(Dataset):
    """Item k: ((b, crop, crop, 3) uint8 tensor, [error reason or "" per image]) for images
    ``k * batch_size`` onwards of ``paths``; b = ``batch_size`` except for the last batch.

    Decoding errors are returned, not raised, so one bad file does not kill a worker and the
    main process decides (fail or skip) with the file named; a bad image's row is zeros.
    """

    def __init__(
        self,
        paths: list[Path],
        batch_size: int,
        pre: Preprocess,
        pool: Executor | None = None,
        threads: int = 1,
    ) -> None:
        """``pre``: the backbone's resize, crop and interpolation. ``pool``: divide each batch
        into ``threads`` tasks on it (main-process loading only; a pool does not pickle into
        worker processes)."""
        self.paths, self.batch_size = paths, batch_size
        self.resize, self.crop, self.interpolation = pre.resize, pre.crop, pre.interpolation
        self.mode, self.fill = pre.resize_mode, pre.pad_colour
        self.pool, self.threads = pool, threads if pool is not None else 1

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.batch_size)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, list[str]]:
        if not 0 <= k < len(self):
            raise IndexError(f"batch {k} out of range for {len(self)} batches")
        paths = self.paths[k * self.batch_size : (k + 1) * self.batch_size]
        out = torch.empty((len(paths), self.crop, self.crop, 3), dtype=torch.uint8)
        errors = [""] * len(paths)

        @torch.inference_mode()  # ``out`` may be an inference tensor (made under the engine's mode)
        def decode(rows: range) -> None:
            for r in rows:
                try:
                    # np.array copies: PIL's buffer is read-only and torch wants writable memory.
                    image = np.array(open_rgb(paths[r], min_short_side=self.resize))
                except ImageDecodeError as exc:
                    out[r] = 0
                    errors[r] = exc.reason
                    continue
                out[r] = to_input(image, self.resize, self.crop, self.interpolation,
                                  mode=self.mode, fill=self.fill)

        if self.pool is None:
            decode(range(len(paths)))
        else:  # list() re-raises any unexpected error from a task
            parts = [range(t, len(paths), self.threads) for t in range(self.threads)]
            list(self.pool.map(decode, parts))
        return out, errors
