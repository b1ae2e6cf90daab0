"""Fixtures of the fine-tune tests: a tiny image folder cut from the bundled demo data (real
Fashion-MNIST PNGs, 28 px) and a params file that fine-tunes on it at 32 px."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

DEMO = Path(__file__).resolve().parents[2] / "data" / "fashion-mnist-demo"
CLASSES = ("bag", "coat", "sneaker")


def tiny_folder(root: Path, per_split: dict[str, int]) -> Path:
    """root/<split>/<class>/*.png with per_split[split] images of each of CLASSES."""
    for split, k in per_split.items():
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for f in sorted((DEMO / split / c).iterdir())[:k]:
                shutil.copy(f, root / split / c / f.name)
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """3 classes x (8 train, 4 val, 4 test) images."""
    return tiny_folder(tmp_path / "data", {"train": 8, "val": 4, "test": 4})


def write_params(path: Path, data: Path, **finetune) -> Path:
    """A params file for lite0 at 32 px fine-tuning on ``data`` (``finetune`` overrides)."""
    ft = {"backbones": ["lite0"], "epochs": 2, "lrs": [0.001], "batch_size": 8,
          "warmup_epochs": 0.5, **finetune}
    path.write_text(yaml.safe_dump({
        "data": {"path": str(data)},
        "extract": {"image_size": 32, "device": "cpu"},
        "backbones": {"lite0": {"spec": "lite:efficientnet-lite0"},
                      "r18": {"spec": "torchvision:resnet18:none"}},
        "probes": {"logreg": {}},
        "finetune": ft,
        "seed": 0,
    }))
    return path
