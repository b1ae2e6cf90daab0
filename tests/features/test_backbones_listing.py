"""Issue 11.5: listing builds models on the meta device without touching ``torch.nn.Module``,
so a model built at the same time in another thread gets real weights."""

from __future__ import annotations

import threading

import timm
import torch
import torchvision

from linprobe.features.backbones import list_backbones
from linprobe.features.backbones.listing import torchvision_shape


def test_listing_changes_no_class_and_other_threads_build_real_models():
    before = dict(vars(torch.nn.Module))
    done = threading.Event()
    errors: list[BaseException] = []

    def listing() -> None:
        try:
            for _ in range(3):
                list_backbones(("lite", "timm"), pattern="resnet1*")
                list_backbones(("lite",))
        except BaseException as err:  # reported by the main thread
            errors.append(err)
        finally:
            done.set()

    worker = threading.Thread(target=listing)
    worker.start()
    built = 0
    while not done.is_set():
        net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
        assert all(t.device.type == "cpu" for t in [*net.parameters(), *net.buffers()])
        assert dict(vars(torch.nn.Module)) == before
        built += 1
    worker.join()
    assert not errors, errors
    assert built > 0 and dict(vars(torch.nn.Module)) == before


def _real(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_meta_builds_count_like_real_ones():
    """regnet computes its widths with tensors: they stay real while its weights go to meta."""
    for name in ("regnet_x_400mf", "resnet18", "swin_t"):
        dim, params = torchvision_shape(name)
        net = torchvision.models.get_model(name, weights=None)
        assert params == _real(net)
    assert torchvision_shape("regnet_x_400mf")[0] == 400
    (row,) = list_backbones(("timm",), pattern="resnet18")
    assert row["num_params"] == _real(timm.create_model("resnet18")) and row["embed_dim"] == 512
