"""Issue 3.2-3.4: file: backbones, list_backbones, the layer option."""

from __future__ import annotations

import pytest
import torch

from linprobe.features.backbones import (
    Preprocess,
    UnknownLayerError,
    format_backbones,
    list_backbones,
    load_backbone,
)

from ._backbone_helpers import assert_reproduces_logits, torchvision_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_layer_option_pools_the_named_module():
    torch.manual_seed(0)
    b = load_backbone("torchvision:resnet18:none", image_size=32, layer="layer3")
    torch.manual_seed(0)
    ref = torchvision_classifier("resnet18", 32)
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


def test_file_checkpoint_and_safetensors(tmp_path):
    import json

    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = torchvision_classifier("resnet18", num_classes=7)  # e.g. a fine-tuned 7-class model
    pre = Preprocess(36, 32, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), "bicubic")
    x = torch.randn(2, 3, 32, 32)
    ckpt = tmp_path / "ft.pth"
    torch.save({"arch": "torchvision:resnet18", "state_dict": net.state_dict(), "num_classes": 7,
                "preprocess": pre.to_dict()}, ckpt)
    safe = tmp_path / "ft.safetensors"
    save_file(net.state_dict(), str(safe), metadata={
        "arch": "torchvision:resnet18:none", "num_classes": "7", "preprocess": json.dumps(pre.to_dict())})
    for path in (ckpt, safe):
        b = load_backbone(f"file:{path}")
        with torch.inference_mode():
            assert_reproduces_logits(b.model(x), net.fc, b.head, net(x))
        assert b.preprocess == pre and b.embed_dim == 512 and b.weights == path.name
    b = load_backbone(f"file:{ckpt}", layer="layer3")  # hooks work: it is a real torchvision module
    assert b.embed_dim == 256


def test_file_torchscript_is_refused(tmp_path):
    """TorchScript runs its own code at load and forward; tests/hostile/test_model_files.py has
    the malicious versions."""
    small = torchvision_classifier("squeezenet1_1")
    path = tmp_path / "small.pt"
    torch.jit.save(torch.jit.script(small), str(path))
    with pytest.raises(ValueError, match=r"is a TorchScript archive, which linprobe refuses.*torch\.save\("):
        load_backbone(f"file:{path}", image_size=32)


def test_file_bad_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"must be a dict with 'arch'.*missing \['arch', 'state_dict'\]"):
        load_backbone(f"file:{path}")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is a text file, not a model file"):
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
    table = format_backbones(list_backbones(pattern="*lite0") + [row]).splitlines()
    assert table[0].split() == ["spec", "embed_dim", "params", "(M)", "offline"]
    assert table[1].split() == ["lite:efficientnet-lite0", "1280", "4.7", "yes"]
    assert table[2].split() == ["torchvision:resnet18:IMAGENET1K_V1", "512", "11.7", "yes"]
    with pytest.raises(ValueError, match="'families' parameter"):
        list_backbones(("keras",))


def _put_in_cache(tmp_path, monkeypatch, state: dict, weights) -> None:
    """Place a state dict where torchvision looks for ``weights`` (TORCH_HOME layout)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / weights.url.rsplit("/", 1)[-1])


def test_named_weights_load_from_the_offline_cache(tmp_path, monkeypatch):
    """The pretrained path: weights file found in the cache, loaded, preprocessing from the enum."""
    from torchvision.models import ResNet18_Weights

    torch.manual_seed(1)
    net = torchvision_classifier("resnet18")
    _put_in_cache(tmp_path, monkeypatch, net.state_dict(), ResNet18_Weights.IMAGENET1K_V1)
    b = load_backbone("torchvision:resnet18")  # no weights part = DEFAULT = IMAGENET1K_V1
    assert b.spec == "torchvision:resnet18:IMAGENET1K_V1" and b.weights == "IMAGENET1K_V1"
    assert b.preprocess == Preprocess(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        # the file's weights, not a fresh init
        assert_reproduces_logits(b.model(x), net.fc, b.head, net(x))


def test_pretrained_vit_at_another_image_size_interpolates_positions(tmp_path, monkeypatch):
    from torchvision.models import ViT_B_32_Weights

    torch.manual_seed(2)
    net224 = torchvision_classifier("vit_b_32")
    _put_in_cache(tmp_path, monkeypatch, net224.state_dict(), ViT_B_32_Weights.IMAGENET1K_V1)
    b = load_backbone("torchvision:vit_b_32:IMAGENET1K_V1", image_size=64)
    assert b.preprocess.crop == 64 and b.embed_dim == 768
    trunk = b.model.trunk
    assert trunk.encoder.pos_embedding.shape == (1, (64 // 32) ** 2 + 1, 768)
    assert torch.equal(trunk.class_token, net224.class_token)  # the cached weights were loaded
    with torch.inference_mode():
        assert b.model(torch.randn(1, 3, 64, 64)).shape == (1, 768)


def test_file_exported_program_is_refused(tmp_path):
    """torch.export.load unpickles weights with weights_only=False."""
    small = torchvision_classifier("squeezenet1_1")
    path = tmp_path / "small.pt2"
    batch = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
    torch.export.save(torch.export.export(small, (torch.randn(2, 3, 32, 32),), dynamic_shapes=batch), str(path))
    with pytest.raises(ValueError, match=r"is a torch\.export archive \(\.pt2\), which linprobe refuses"):
        load_backbone(f"file:{path}", image_size=32)


def test_layer_that_cannot_take_the_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"failed on a \(1, 3, 16, 16\) input.*'image_size' parameter"):
        load_backbone("torchvision:squeezenet1_1:none", image_size=16, layer="features.12")
