"""Build the bundled demo dataset: a seeded subset of real Fashion-MNIST images as PNG files.

    python data/make_fashion_mnist_demo.py            # writes data/fashion-mnist-demo/
    python data/make_fashion_mnist_demo.py --train 100 --val 30 --test 50 --seed 0

Source: the Debian package `dataset-fashion-mnist` (apt-get install dataset-fashion-mnist), which
puts the original idx files under /usr/share/datasets/fashion-mnist. Train and val images are drawn
from the original training set (disjoint), test images from the original test set, so the demo's
test split never overlaps the images a probe is fitted or tuned on.

Layout written: <out>/{train,val,test}/<class>/<split>-<original index>.png (28x28, 8-bit gray).
Needs only numpy and Pillow; the same seed always gives the same files.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("tshirt_top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle_boot")


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped): images (N, 28, 28) uint8 or labels (N,) uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


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
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "fashion-mnist-demo")
    ap.add_argument("--train", type=int, default=100, help="train images per class")
    ap.add_argument("--val", type=int, default=30, help="val images per class")
    ap.add_argument("--test", type=int, default=50, help="test images per class")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    files = {name: args.source / f"{name}-idx{nd}-ubyte.gz" for name, nd in
             [("train-images", 3), ("train-labels", 1), ("t10k-images", 3), ("t10k-labels", 1)]}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise SystemExit(f"missing {missing}: run `apt-get install dataset-fashion-mnist` "
                         f"or pass --source DIR holding the Fashion-MNIST idx files")
    rng = np.random.default_rng(args.seed)
    train_x, train_y = read_idx(files["train-images"]), read_idx(files["train-labels"])
    test_x, test_y = read_idx(files["t10k-images"]), read_idx(files["t10k-labels"])

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
