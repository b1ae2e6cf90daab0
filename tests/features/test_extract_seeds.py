"""The two seeds of extraction, each with its own name: ``split_seed`` shuffles the split the data
does not define, ``init_seed`` draws random-init weights; both are recorded by name."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from linprobe.features.config import ExtractConfig, SplitConfig
from linprobe.features.extract import extract_embeddings
from linprobe.features.store import read_embeddings

REPO = Path(__file__).resolve().parents[2]
R18 = "torchvision:resnet18:none"
FAST = ExtractConfig(image_size=32, batch_size=8, num_workers=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """18 bundled Fashion-MNIST images, 3 classes, no split folders (so the split is drawn)."""
    root = tmp_path_factory.mktemp("seeds")
    source = REPO / "data" / "fashion-mnist-demo" / "train"
    for cls in sorted(p.name for p in source.iterdir())[:3]:
        (root / cls).mkdir()
        for image in sorted((source / cls).iterdir())[:6]:
            shutil.copy(image, root / cls / image.name)
    return root


def _run(folder: Path, out: Path, config: ExtractConfig = FAST, split: SplitConfig = SplitConfig()):
    return read_embeddings(extract_embeddings(R18, folder, out, config, split, progress=False))


def test_init_seed_draws_the_weights_and_split_seed_the_split(folder, tmp_path):
    base = _run(folder, tmp_path / "base.h5")
    assert base.attrs["split_seed"] == 0 and base.attrs["init_seed"] == 0  # the defaults

    same = _run(folder, tmp_path / "same.h5", replace(FAST, init_seed=0))
    np.testing.assert_array_equal(same.embeddings, base.embeddings)

    other_init = _run(folder, tmp_path / "init.h5", replace(FAST, init_seed=1))
    assert other_init.attrs["init_seed"] == 1
    assert other_init.attrs["weights_sha256"] != base.attrs["weights_sha256"]
    np.testing.assert_array_equal(other_init.split, base.split)  # the split did not move

    other_split = _run(folder, tmp_path / "split.h5", split=SplitConfig(split_seed=4))
    assert other_split.attrs["split_seed"] == 4
    assert other_split.attrs["weights_sha256"] == base.attrs["weights_sha256"]  # nor the weights
    assert not np.array_equal(other_split.split, base.split)


def test_keyword_options_are_the_config_fields(folder, tmp_path):
    es = read_embeddings(extract_embeddings(R18, folder, tmp_path / "kw.h5", image_size=32,
                                            batch_size=8, num_workers=0, init_seed=1,
                                            split_seed=4, progress=False))
    assert (es.attrs["init_seed"], es.attrs["split_seed"], es.attrs["batch_size"]) == (1, 4, 8)
    with pytest.raises(TypeError, match="'seed' was split in two"):
        extract_embeddings(R18, folder, tmp_path / "old.h5", seed=1)


def test_init_seed_for_a_pretrained_backbone_is_refused_before_any_work(folder, tmp_path):
    with pytest.raises(ValueError, match="'init_seed' parameter seeds random-init weights only"):
        extract_embeddings("lite:efficientnet-lite0", folder, tmp_path / "p.h5", init_seed=0)
    assert not list(tmp_path.iterdir())
