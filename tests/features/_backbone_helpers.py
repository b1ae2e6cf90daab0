"""Reference classifiers for the backbone tests, built without linprobe's loading or head-splitting
code: torchvision and timm models straight from their libraries, and their final layers by the
libraries' own attribute names. The tests check ``embedding @ W.T + b == logits`` against these."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

# Families whose final layer is ``.fc``; the others are named in ``final_layer``.
_FC_FAMILIES = ("resnet", "resnext", "wide_resnet", "regnet", "shufflenet", "googlenet",
                "inception")


def torchvision_classifier(name: str, image_size: int | None = None, **kwargs) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None)`` in eval mode, with the architecture
    options torchvision's pretrained builds use (no aux heads; sized position embeddings)."""
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, transform_input=True, init_weights=True)
    if image_size is not None and name.startswith("vit_"):
        kwargs["image_size"] = image_size
    if image_size is not None and name.startswith("maxvit_"):
        kwargs["input_size"] = (image_size, image_size)
    return torchvision.models.get_model(name, weights=None, **kwargs).eval()


def final_layer(name: str, net: nn.Module) -> nn.Module:
    """The last layer of torchvision classifier ``name``: a Linear, or squeezenet's 1x1 Conv2d."""
    if name.startswith(_FC_FAMILIES):
        return net.fc
    if name.startswith("vit_"):
        return net.heads.head
    if name.startswith("swin_"):
        return net.head
    if name.startswith("densenet"):
        return net.classifier
    if name.startswith("squeezenet"):
        return net.classifier[1]  # Dropout, final conv, ReLU, AdaptiveAvgPool
    return net.classifier[-1]  # alexnet, vgg, convnext, efficientnet, mnasnet, mobilenet, maxvit


def apply_final_layer(embedding: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """``embedding @ W.T + b`` (B, classes) from the layer's own weights. A squeezenet conv head
    is ``avgpool(relu(conv1x1(x)))``: equal to ``relu(embedding @ W.T + b)`` on a 1x1 map."""
    with torch.inference_mode():
        out = embedding @ layer.weight.flatten(1).T
        if layer.bias is not None:  # maxvit's final Linear has no bias
            out = out + layer.bias
        return out.relu() if isinstance(layer, nn.Conv2d) else out


def assert_close_logits(recon: torch.Tensor, logits: torch.Tensor) -> None:
    """``recon`` == ``logits``, with a tolerance relative to the logits' scale."""
    assert recon.shape == logits.shape
    assert torch.isfinite(logits).all()
    scale = float(logits.abs().max()) + 1e-6
    worst = float((recon - logits).abs().max())
    assert torch.allclose(recon, logits, rtol=1e-4, atol=1e-4 * scale), worst


def assert_reproduces_logits(embedding: torch.Tensor, layer: nn.Module, head: nn.Module,
                             logits: torch.Tensor) -> None:
    """The reference model's final ``layer`` applied to ``embedding`` (B, D) gives its ``logits``
    (B, classes), and so does the ``head`` the code under test returned."""
    assert_close_logits(apply_final_layer(embedding, layer), logits)
    with torch.inference_mode():
        assert_close_logits(head(embedding), logits)
