"""Training batches: seeded augmentation, the same whatever the threads; eval transform off."""

from __future__ import annotations

import numpy as np
import torch

from linprobe.features.backbones.lite import lite_preprocess
from linprobe.features.loader import DecodedBatches, decode_pool
from linprobe.finetune.data import Augment, TrainBatches, crop_box, epoch_seed


def test_crop_boxes_stay_inside_and_follow_the_scale():
    rng = np.random.default_rng(0)
    for h, w in [(28, 28), (40, 10), (10, 400), (300, 200)]:
        for _ in range(200):
            top, left, ch, cw = crop_box(rng, h, w, (0.25, 1.0))
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch and cw
    areas = [np.prod(crop_box(rng, 200, 200, (0.5, 0.6))[2:]) / 200**2 for _ in range(200)]
    assert 0.45 < min(areas) and max(areas) < 0.65


def test_epoch_seeds_differ():
    seeds = {epoch_seed(0, i, e) for i in range(3) for e in range(1, 5)}
    assert len(seeds) == 12 and epoch_seed(0, 0, 1) == epoch_seed(0, 0, 1) != epoch_seed(1, 0, 1)


def test_batches_are_seeded_and_thread_independent(tiny_data):
    paths = sorted(tiny_data.glob("train/*/*.png"))
    labels = np.arange(len(paths)) % 3
    pre = lite_preprocess("efficientnet-lite0").with_image_size(32)
    order = np.random.default_rng(0).permutation(len(paths))
    make = lambda seed, pool=None, threads=1, aug=Augment(): TrainBatches(  # noqa: E731
        paths, labels, order, 8, pre, aug, seed, pool, threads)
    x, y = make(5)[1]
    assert x.shape == (8, 32, 32, 3) and x.dtype == torch.uint8
    assert torch.equal(y, torch.from_numpy(labels[order[8:16]]))
    with decode_pool(2) as pool:
        assert torch.equal(make(5, pool, 2)[1][0], x)
    assert torch.equal(make(5)[1][0], x) and not torch.equal(make(6)[1][0], x)
    assert len(make(5)) == len(paths) // 8   # the last partial batch is dropped
    # No augmentation: exactly the eval transform (the extractor's decoding), in batch order.
    plain = make(5, aug=Augment(random_resized_crop=False, hflip=False))[0][0]
    ref = DecodedBatches([paths[i] for i in order[:8]], 8, pre)[0][0]
    assert torch.equal(plain, ref)
