"""Issue 3.2-3.4: file: backbones, list_backbones, the layer option."""

from __future__ import annotations

import pytest
import torch

from linprobe.features.backbones import (
    Preprocess,
    UnknownBackboneError,
    UnknownLayerError,
    WeightsUnavailableError,
    list_backbones,
    load_backbone,
)
from linprobe.features.backbones.lite import build_lite
from linprobe.features.backbones.torchvision_ import build_classifier

from ._logits import assert_head_reproduces


def test_layer_option_pools_the_named_module():
    torch.manual_seed(0)
    b = load_backbone("torchvision:resnet18:none", image_size=32, layer="layer3")
    torch.manual_seed(0)
    ref = build_classifier("resnet18", None, 32)
    captured = []
    ref.layer3.register_forward_hook(lambda m, args, out: captured.append(out))
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        ref(x)
        emb = b.model(x)
    assert b.layer == "layer3" and b.head is None and b.embed_dim == 256
    assert torch.allclose(emb, captured[0].mean(dim=(2, 3)), atol=1e-6)


def test_layer_option_on_lite_and_swin_channels_last():
    lite = load_backbone("lite:efficientnet-lite0", image_size=32, layer="_blocks.4")
    assert lite.embed_dim == 40  # blocks 3-4 are the 40-channel stage
    swin = load_backbone("torchvision:swin_t:none", image_size=32, layer="features.3")
    assert swin.embed_dim == 192  # (B, H, W, C) pooled over H, W, not over W, C
    with torch.inference_mode():
        assert swin.model(torch.randn(1, 3, 32, 32)).shape == (1, 192)


def test_unknown_layer_suggests():
    with pytest.raises(UnknownLayerError, match="Did you mean: .*layer3"):
        load_backbone("torchvision:resnet18:none", image_size=32, layer="layer33")


def test_file_torchscript_and_checkpoint(tmp_path):
    lite = build_lite("efficientnet-lite0")
    scripted = torch.jit.trace(lite, torch.randn(1, 3, 32, 32))
    ts_path = tmp_path / "lite.pt"
    torch.jit.save(scripted, str(ts_path))
    b = load_backbone(f"file:{ts_path}", image_size=32)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(b.model(x), lite(x), atol=1e-4)  # the module's own output (logits)
    assert b.embed_dim == 1000 and b.head is None and b.preprocess.crop == 32

    torch.manual_seed(0)
    net = build_classifier("resnet18", None, 32, num_classes=7)  # e.g. a fine-tuned 7-class model
    pre = Preprocess(36, 32, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bicubic")
    ckpt = tmp_path / "ft.pth"
    torch.save({"arch": "torchvision:resnet18", "state_dict": net.state_dict(), "num_classes": 7,
                "preprocess": pre.to_dict()}, ckpt)
    b = load_backbone(f"file:{ckpt}")
    with torch.inference_mode():
        assert_head_reproduces(b.model(x), b.head, net(x))
    assert b.preprocess == pre and b.embed_dim == 512 and b.weights == "ft.pth"


def test_file_bad_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="must be a dict with 'arch'"):
        load_backbone(f"file:{path}")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="neither a TorchScript module nor a checkpoint"):
        load_backbone(f"file:{junk}")


def test_list_backbones_reports_dims_and_offline_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    rows = {r["spec"]: r for r in list_backbones(include_random=True)}
    lite0 = rows["lite:efficientnet-lite0"]
    assert lite0["embed_dim"] == 1280 and lite0["offline"] is True
    r18 = rows["torchvision:resnet18:IMAGENET1K_V1"]
    assert r18["embed_dim"] == 512 and r18["offline"] is False
    assert r18["weights_path"] == str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    assert rows["torchvision:mobilenet_v3_small:none"]["embed_dim"] == 1024
    assert rows["torchvision:squeezenet1_0:none"]["offline"] is True
    # A weights file put where the message says makes it offline-available.
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"x")
    (row,) = list_backbones(("torchvision",), pattern="resnet18")
    assert row["offline"] is True
    with pytest.raises(ValueError, match="'families' parameter"):
        list_backbones(("keras",))
