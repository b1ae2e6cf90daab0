"""Issue 11.5: extraction turns cuDNN autotuning on for its own run only, and restores the
caller's setting afterwards, also when the run fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from linprobe.features.extract import cudnn_autotune, extract_embeddings
from linprobe.features.images import ImageDecodeError
from tests.features.imagedata import write_folder

# The GPU path is where the flag is set; it runs wherever a GPU is present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def cudnn_benchmark():
    """The flag as the test sets it; the process's own value is put back afterwards."""
    saved = torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.benchmark = saved


@pytest.mark.parametrize("before", [False, True])
def test_cudnn_autotune_restores_the_flag(cudnn_benchmark, before):
    torch.backends.cudnn.benchmark = before
    with cudnn_autotune(torch.device("cuda")):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark is before
    with pytest.raises(KeyboardInterrupt):
        with cudnn_autotune(torch.device("cuda")):
            raise KeyboardInterrupt
    assert torch.backends.cudnn.benchmark is before
    with cudnn_autotune(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark is before  # nothing to tune without cuDNN


@pytest.mark.parametrize("device", DEVICES)
def test_extraction_leaves_the_cudnn_flag_as_it_was(cudnn_benchmark, device, tmp_path):
    data = write_folder(tmp_path / "data", per_class=3, classes=2)
    torch.backends.cudnn.benchmark = False
    kwargs = dict(image_size=32, batch_size=4, num_workers=0, device=device, progress=False)
    extract_embeddings("torchvision:resnet18:none", data, tmp_path / "ok.h5", **kwargs)
    assert torch.backends.cudnn.benchmark is False
    bad = Path(shutil.copytree(data, tmp_path / "bad"))
    (bad / "trouser" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageDecodeError, match="zz_broken"):
        extract_embeddings("torchvision:resnet18:none", bad, tmp_path / "bad.h5", **kwargs)
    assert torch.backends.cudnn.benchmark is False
