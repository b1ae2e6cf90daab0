"""Build the bundled multi-label demo: 2x2 mosaics of real Fashion-MNIST images.

    python data/make_fashion_mnist_mosaics.py          # writes data/fashion-mnist-mosaic/
    python data/make_fashion_mnist_mosaics.py --layout 1x3 --out /tmp/wide   # 84x28 strips

Each 56x56 mosaic holds 2 to 4 Fashion-MNIST items in its four 28x28 cells (empty cells stay
black); its labels are the categories present. ``--layout 1x3`` makes wide 84x28 strips of 2 or
3 items side by side instead, the set that shows what a centre crop cuts away (the end items)
and `extract.resize: pad` keeps. The manifest `manifest.csv` has columns
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


LAYOUTS = {"2x2": (2, 2), "1x3": (1, 3)}  # rows x columns of 28x28 cells


def mosaic(images: np.ndarray, labels: np.ndarray, pool: list[int], rng: np.random.Generator,
           grid: tuple[int, int] = (2, 2)) -> tuple[np.ndarray, set[str]]:
    """One (28 * rows, 28 * cols) uint8 mosaic from 2 to rows * cols items popped off `pool`,
    and its set of class names."""
    rows, cols = grid
    canvas = np.zeros((28 * rows, 28 * cols), np.uint8)
    cells = rng.permutation(rows * cols)[: rng.integers(2, rows * cols + 1)]
    present = set()
    for cell in cells:
        i = pool.pop()
        r, c = divmod(int(cell), cols)
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
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="2x2",
                    help="cells per image: 2x2 (56x56 mosaics) or 1x3 (84x28 wide strips)")
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
            img, present = mosaic(x, y, pool, rng, LAYOUTS[args.layout])
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
