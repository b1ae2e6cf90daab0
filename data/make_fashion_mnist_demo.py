"""Build the bundled demo dataset: a seeded subset of real Fashion-MNIST images as PNG files.

    python data/make_fashion_mnist_demo.py            # writes data/fashion-mnist-demo/
    python data/make_fashion_mnist_demo.py --train 100 --val 30 --test 50 --seed 0

Source: the Debian package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist), which
puts the original idx files under /usr/share/datasets/fashion-mnist. Train and val images are drawn
from the original training set (disjoint), test images from the original test set, so the demo's
test split never overlaps the images a probe is fitted or tuned on.

Layout written: <out>/{train,val,test}/<class>/<split>-<original index>.png (28x28, 8-bit gray).
Needs numpy, Pillow and linprobe installed; the same seed always gives the same files.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from linprobe.features.fashion_mnist import CLASSES, DEFAULT_ROOT, load_all

def pick(labels: np.ndarray, per_class: int, rng: np.random.Generator,
         exclude: set[int] = frozenset()) -> dict[int, list[int]]:
    """Seeded choice of `per_class` indices per class, none of them in `exclude`."""
    chosen = {}
    for c in range(len(CLASSES)):
        pool = np.array([i for i in np.flatnonzero(labels == c) if i not in exclude])
        chosen[c] = sorted(rng.choice(pool, size=per_class, replace=False).tolist())
    return chosen


def write_split(out: Path, split: str, images: np.ndarray, chosen: dict[int, list[int]]) -> int:
    for c, indices in chosen.items():
        folder = out / split / CLASSES[c]
        folder.mkdir(parents=True, exist_ok=True)
        for i in indices:
            # optimize=True keeps the bundled PNGs small (~300 bytes each).
            Image.fromarray(images[i], mode="L").save(folder / f"{split}-{i:05d}.png", optimize=True)
    return sum(len(v) for v in chosen.values())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "fashion-mnist-demo")
    ap.add_argument("--train", type=int, default=100, help="train images per class")
    ap.add_argument("--val", type=int, default=30, help="val images per class")
    ap.add_argument("--test", type=int, default=50, help="test images per class")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    train_x, train_y, test_x, test_y = load_all(args.source)
    rng = np.random.default_rng(args.seed)

    if args.out.exists():
        shutil.rmtree(args.out)
    train = pick(train_y, args.train, rng)
    val = pick(train_y, args.val, rng, exclude={i for v in train.values() for i in v})
    test = pick(test_y, args.test, rng)
    counts = {
        "train": write_split(args.out, "train", train_x, train),
        "val": write_split(args.out, "val", train_x, val),
        "test": write_split(args.out, "test", test_x, test),
    }
    print(f"wrote {counts} images under {args.out}")


if __name__ == "__main__":
    main()
