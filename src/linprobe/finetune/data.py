"""Training and evaluation batches for the fine-tune arms, decoded as the extractor decodes.

Training items are whole batches (B, crop, crop, 3) uint8 plus their labels, like
:class:`linprobe.features.loader.DecodedBatches`: decoded by worker processes on CUDA, or on a
thread pool in the main process between steps on CPU (see ``features.loader`` for why).
Augmentation (random resized crop of the whole decoded image, horizontal flip) is drawn per image
from a generator seeded by (epoch seed, position in the epoch): the same images and pixels in
every run, whatever the number of threads or workers and wherever a resumed run restarts. Val and
test use the weights' own eval transform (``DecodedBatches``), never augmented.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode

from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.images import ImageDecodeError, open_rgb
from linprobe.features.loader import to_input

_RATIO = (math.log(3 / 4), math.log(4 / 3))  # aspect ratios of random resized crops (torchvision's)


@dataclass(frozen=True)
class Augment:
    """Train-time augmentation: random resized crop over ``scale`` of the image area (else the
    eval transform), horizontal flip with probability 1/2."""

    random_resized_crop: bool = True
    scale: tuple[float, float] = (0.25, 1.0)
    hflip: bool = True


def epoch_seed(seed: int, lr_index: int, epoch: int) -> int:
    """The seed of one epoch's order, augmentation and dropout: a function of the run's seed
    and the epoch only, so a resumed run draws exactly what an uninterrupted one does."""
    return int(np.random.SeedSequence([seed, lr_index, epoch]).generate_state(1)[0])


def crop_box(rng: np.random.Generator, h: int, w: int,
             scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop covering ``scale`` of the area at an aspect
    ratio in [3/4, 4/3] (torchvision's RandomResizedCrop, drawn from ``rng``)."""
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(*_RATIO))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    # Fallback: the central crop at the nearest allowed aspect ratio (as torchvision does).
    ratio = w / h
    if ratio < 3 / 4:
        cw, ch = w, round(w / (3 / 4))
    elif ratio > 4 / 3:
        ch, cw = h, round(h * (4 / 3))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class TrainBatches(Dataset):
    """Item k: ((b, crop, crop, 3) uint8, (b,) or (b, C) labels) for positions
    ``k * batch_size`` onwards of ``order`` (indices into ``paths``); the last partial batch is
    dropped (a batch of one breaks BatchNorm in training)."""

    def __init__(self, paths: list[Path], labels: np.ndarray, order: np.ndarray, batch_size: int,
                 pre: Preprocess, augment: Augment, seed: int, pool: Executor | None = None,
                 threads: int = 1) -> None:
        self.paths, self.labels, self.order = paths, labels, order
        self.batch_size, self.pre, self.augment, self.seed = batch_size, pre, augment, seed
        self.pool, self.threads = pool, threads if pool is not None else 1

    def __len__(self) -> int:
        return len(self.order) // self.batch_size

    def image(self, index: int, position: int) -> torch.Tensor:
        """(crop, crop, 3) uint8: image ``index`` augmented as the ``position``-th of the epoch."""
        pre, aug = self.pre, self.augment
        rng = np.random.default_rng([self.seed, position])
        image = np.array(open_rgb(self.paths[index], min_short_side=pre.resize))
        if aug.random_resized_crop:
            top, left, h, w = crop_box(rng, image.shape[0], image.shape[1], aug.scale)
            x = torch.from_numpy(image).permute(2, 0, 1)
            x = F.resized_crop(x, top, left, h, w, [pre.crop, pre.crop],
                               interpolation=InterpolationMode(pre.interpolation),
                               antialias=True).permute(1, 2, 0)
        else:
            x = to_input(image, pre.resize, pre.crop, pre.interpolation, mode=pre.resize_mode,
                         fill=pre.pad_colour)
        if aug.hflip and rng.random() < 0.5:
            x = x.flip(1)
        return x

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= k < len(self):
            raise IndexError(f"batch {k} out of range for {len(self)} batches")
        start = k * self.batch_size
        rows = self.order[start : start + self.batch_size]
        out = torch.empty((len(rows), self.pre.crop, self.pre.crop, 3), dtype=torch.uint8)

        def decode(part: range) -> None:
            for r in part:
                out[r] = self.image(int(rows[r]), start + r)

        if self.pool is None:
            decode(range(len(rows)))
        else:  # list() re-raises a task's error (an ImageDecodeError names the file)
            list(self.pool.map(decode, [range(t, len(rows), self.threads)
                                        for t in range(self.threads)]))
        return out, torch.from_numpy(np.ascontiguousarray(self.labels[rows]))


def default_workers(device: torch.device, workers: int | None) -> int:
    """Decoding worker processes: ``workers`` when given; on CUDA most cores; on CPU none (the
    main process decodes on a thread pool between steps, as the extractor does)."""
    if workers is not None:
        return workers
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, (cores or 2) - 1))


def loader(batches: Dataset, device: torch.device, workers: int) -> DataLoader:
    """Whole-batch items in order; pinned memory and worker prefetching on CUDA."""
    return DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda")


def checked(items: Iterable[tuple[torch.Tensor, list[str]]], paths: list[Path],
            batch_size: int) -> Iterator[torch.Tensor]:
    """The batches of DecodedBatches ``items`` over ``paths`` (eval transform); an unreadable
    image raises ImageDecodeError naming the file."""
    for k, (x, errors) in enumerate(items):
        bad = next((j for j, e in enumerate(errors) if e), None)
        if bad is not None:
            raise ImageDecodeError(paths[k * batch_size + bad], errors[bad],
                                   "fix or remove the file: fine-tuning reads every image")
        yield x
