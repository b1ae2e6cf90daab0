"""Issue 3.1: every torchvision classification model embeds the input of its final layer."""

from __future__ import annotations

import pytest
import torch
import torchvision

from linprobe.features.backbones import load_backbone

from ._backbone_helpers import assert_reproduces_logits, final_layer, torchvision_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Smallest inputs each architecture accepts (default 32 px).
_SIZES = {"inception_v3": 80, "alexnet": 64, "maxvit_t": 224, "vit_h_14": 28}
# Random init of all 80 models takes minutes on a 2-core CPU, so the default run covers every
# family and odd head through one member each (resnet18, efficientnet_b0, mobilenet_v3_small,
# convnext_tiny and vit_b_16 are in test_backbones.py); `pytest -m slow` runs all the others
# (maxvit_t, with its bias-free final Linear, needs 224 px and ~25 s, so it is among them).
_DEFAULT_RUN = {
    "alexnet", "densenet121", "efficientnet_v2_s", "googlenet", "inception_v3", "mnasnet0_5",
    "mobilenet_v2", "regnet_x_400mf", "regnet_y_400mf", "resnext50_32x4d", "shufflenet_v2_x0_5",
    "squeezenet1_0", "squeezenet1_1", "swin_t", "vgg11_bn", "vit_b_32",
}  # fmt: skip

MODELS = [
    name if name in _DEFAULT_RUN else pytest.param(name, marks=pytest.mark.slow)
    for name in torchvision.models.list_models(module=torchvision.models)
]


@pytest.mark.parametrize("name", MODELS)
def test_every_torchvision_model_embedding_is_final_layer_input(name):
    size = _SIZES.get(name, 32)
    torch.manual_seed(0)
    b = load_backbone(f"torchvision:{name}:none", image_size=size)
    torch.manual_seed(0)  # identical random weights in the reference, built by torchvision itself
    ref = torchvision_classifier(name, size)
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        emb, logits = b.model(x), ref(x)
    assert emb.shape == (2, b.embed_dim) and emb.dtype == torch.float32
    assert logits.shape == (2, 1000)
    # squeezenet's conv head is exact here because 32 px gives a 1x1 final map (see torchvision_).
    assert_reproduces_logits(emb, final_layer(name, ref), b.head, logits)


def test_squeezenet_embedding_is_pooled_input_of_final_conv():
    """At larger inputs the map is > 1x1: the embedding is still the GAP of the final conv's input."""
    torch.manual_seed(0)
    ref = torchvision_classifier("squeezenet1_1", 96)
    captured = []
    ref.classifier[1].register_forward_hook(lambda m, args, out: captured.append(args[0]))
    x = torch.randn(2, 3, 96, 96)
    torch.manual_seed(0)
    b = load_backbone("torchvision:squeezenet1_1:none", image_size=96)
    with torch.inference_mode():
        ref(x)
        emb = b.model(x)
    assert captured[0].shape[-1] > 1
    assert emb.shape == (2, 512)
    assert torch.allclose(emb, captured[0].mean(dim=(2, 3)), atol=1e-5)
