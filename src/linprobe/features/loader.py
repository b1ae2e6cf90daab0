"""The DataLoader side of extraction: file -> (crop, crop, 3) uint8 tensor, decoded in workers.

Workers hand over uint8 (4x less inter-process traffic than float) in HWC order, which is what
the antialiased resize produces anyway: a batch (B, H, W, 3) permuted to (B, 3, H, W) is already
channels_last, so no layout copy is ever made. Normalisation happens once per batch in the main
process. Resizing runs on uint8 tensors with antialiasing (torchvision v2),
several times faster than PIL's resize at these sizes and the same arithmetic as the backbone's
own ``build_transform``.

On CPU the engine decodes in the main process instead (``num_workers=0``), one batch at a time
on a thread pool sized to the cores, between forward passes: Pillow and the resize release the
GIL, so decoding uses every core and never competes with the forward's threads (a worker process
running alongside the forward pre-empts one of its OpenMP threads and the other waits at the
barrier: 83 vs 91 img/s for resnet18 on 2 cores). The decoding threads run torch
single-threaded: otherwise each opens its own OpenMP team for the resize, whose threads spin
after it and slowed the forward by another ~9%.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from linprobe.features.images import ImageDecodeError, open_rgb


def to_input(
    image: np.ndarray, resize: int, crop: int, interpolation: str = "bilinear"
) -> torch.Tensor:
    """(H, W, 3) uint8 -> (crop, crop, 3) uint8: short side to ``resize``, then center crop."""
    x = torch.from_numpy(image).permute(2, 0, 1)
    x = F.resize(x, resize, interpolation=InterpolationMode(interpolation), antialias=True)
    # The uint8 antialias kernel returns channels-last strides: HWC is a cheap row copy.
    return F.center_crop(x, [crop, crop]).permute(1, 2, 0).contiguous()


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


class DecodedImages(Dataset):
    """Item i: ((crop, crop, 3) uint8 tensor, error reason or "") for ``paths[i]``.

    Decoding errors are returned, not raised, so one bad file does not kill a worker and the
    main process decides (fail or skip) with the file named.
    """

    def __init__(
        self,
        paths: list[Path],
        resize: int,
        crop: int,
        interpolation: str,
        pool: Executor | None = None,
    ) -> None:
        """``pool``: decode each batch on it (main-process loading only; it does not pickle)."""
        self.paths, self.resize, self.crop, self.interpolation = paths, resize, crop, interpolation
        self.pool = pool

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        try:
            # np.array copies: PIL's buffer is read-only and torch wants writable memory.
            image = np.array(open_rgb(self.paths[i], min_short_side=self.resize))
        except ImageDecodeError as exc:
            return torch.zeros((self.crop, self.crop, 3), dtype=torch.uint8), exc.reason
        return to_input(image, self.resize, self.crop, self.interpolation), ""

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, str]]:
        """A whole batch (DataLoader calls this instead of ``__getitem__`` per index), decoded
        on ``pool`` when there is one."""
        if self.pool is None:
            return [self[i] for i in indices]
        return list(self.pool.map(self.__getitem__, indices))
