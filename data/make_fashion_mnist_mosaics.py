"""Build the bundled multi-label demo: 2x2 mosaics of real Fashion-MNIST images.

    python data/make_fashion_mnist_mosaics.py          # writes data/fashion-mnist-mosaic/

Each 56x56 mosaic holds 2 to 4 Fashion-MNIST items in its four 28x28 cells (empty cells stay
black); its labels are the categories present. The manifest `manifest.csv` has columns
`path,labels,split` with `|`-joined labels, the multi-label manifest format that
`linprobe extract --data` reads. Train and val mosaics use disjoint items of the original training
set, test mosaics items of the original test set. Seeded: the same arguments give the same files.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from linprobe.features.fashion_mnist import CLASSES, DEFAULT_ROOT, load_all


def mosaic(images: np.ndarray, labels: np.ndarray, pool: list[int],
           rng: np.random.Generator) -> tuple[np.ndarray, set[str]]:
    """One (56, 56) uint8 mosaic from 2-4 items popped off `pool`, and its set of class names."""
    canvas = np.zeros((56, 56), np.uint8)
    cells = rng.permutation(4)[: rng.integers(2, 5)]
    present = set()
    for cell in cells:
        i = pool.pop()
        r, c = divmod(int(cell), 2)
        canvas[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28] = images[i]
        present.add(CLASSES[labels[i]])
    return canvas, present


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "fashion-mnist-mosaic")
    ap.add_argument("--train", type=int, default=400, help="train mosaics")
    ap.add_argument("--val", type=int, default=100, help="val mosaics")
    ap.add_argument("--test", type=int, default=200, help="test mosaics")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    train_x, train_y, test_x, test_y = load_all(args.source)
    rng = np.random.default_rng(args.seed)
    # Shuffled pools; popping keeps train and val items disjoint.
    train_pool = rng.permutation(len(train_y)).tolist()
    test_pool = rng.permutation(len(test_y)).tolist()

    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "images").mkdir(parents=True)
    rows = []
    for split, count, (x, y, pool) in [("train", args.train, (train_x, train_y, train_pool)),
                                       ("val", args.val, (train_x, train_y, train_pool)),
                                       ("test", args.test, (test_x, test_y, test_pool))]:
        for n in range(count):
            img, present = mosaic(x, y, pool, rng)
            rel = f"images/{split}-{n:04d}.png"
            Image.fromarray(img, mode="L").save(args.out / rel, optimize=True)
            rows.append({"path": rel, "labels": "|".join(sorted(present)), "split": split})
    with open(args.out / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "labels", "split"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} mosaics and {args.out / 'manifest.csv'}")


if __name__ == "__main__":
    main()
