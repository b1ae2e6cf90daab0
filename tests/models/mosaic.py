"""Real multi-label embeddings for tests: a slice of the bundled Fashion-MNIST mosaic manifest,
embedded by a random-init ResNet-18 at 32 px (seconds on a CPU)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

MOSAIC = Path(__file__).resolve().parents[2] / "data" / "fashion-mnist-mosaic"
PER_SPLIT = {"train": 120, "val": 40, "test": 200}


def copy_mosaic_slice(dst: Path, per_split: dict[str, int]) -> Path:
    """The first ``per_split[s]`` rows of each split of the bundled mosaic manifest, images and
    a manifest.csv under ``dst``; returns the manifest."""
    with open(MOSAIC / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for s, n in per_split.items() for r in [r for r in rows if r["split"] == s][:n]]
    (dst / "images").mkdir(parents=True)
    for r in keep:
        shutil.copy(MOSAIC / r["path"], dst / r["path"])
    with open(dst / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "labels", "split"])
        w.writeheader()
        w.writerows(keep)
    return dst / "manifest.csv"


def mosaic_embeddings(root: Path, name: str = "r18") -> Path:
    """Copy the slice under ``root/data``, extract it; the embeddings file ``root/<name>.h5``."""
    from linprobe.features.extract import extract_embeddings

    data = root / "data"
    copy_mosaic_slice(data, PER_SPLIT)
    return extract_embeddings("torchvision:resnet18:none", data / "manifest.csv",
                              root / f"{name}.h5", image_size=32, batch_size=64, device="cpu",
                              num_workers=0, progress=False)


PROBES = ("ovr_logreg", "ovr_linear_svm")


def mosaic_runs(root: Path) -> Path:
    """``root/artifacts`` with real `train` runs of :data:`PROBES` on the mosaic embeddings
    (backbone name ``r18``), small grid, no few-shot curve."""
    from linprobe.models import train_probe

    emb = mosaic_embeddings(root)
    for probe in PROBES:
        train_probe(emb, probe, root / "artifacts",
                    options={"grid": [0.1, 1.0], "n_boot": 50, "few_shot": False})
    return root / "artifacts"
