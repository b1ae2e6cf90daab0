"""``torchvision:<model>[:<WEIGHTS>|:none]``: every torchvision classification model.

The embedding is the input of the model's final classification layer: that layer is swapped for
``Identity`` and returned as ``head``, so ``head(embedding)`` reproduces the model's logits.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.backbones.suggest import suggest
from linprobe.features.backbones.types import (
    LoadedNet,
    UnknownBackboneError,
    WeightsUnavailableError,
    freeze,
)

NO_WEIGHTS = "none"
# Attribute names torchvision uses for the classifier, in the order they are looked up.
_HEAD_ATTRS: tuple[str, ...] = ("fc", "classifier", "heads", "head")


def model_names() -> list[str]:
    """All torchvision classification models (no detection/segmentation/video)."""
    return torchvision.models.list_models(module=torchvision.models)


def resolve_weights(model: str, weights: str | None) -> WeightsEnum | None:
    """Weights enum member for ``weights`` (None = the model's DEFAULT; 'none' = random init -> None)."""
    if model not in model_names():
        raise UnknownBackboneError(
            f"Unknown torchvision model {model!r} in backbone spec 'torchvision:{model}'."
            + suggest(model, model_names())
            + " `linprobe backbones` lists them all."
        )
    if weights is not None and weights.lower() == NO_WEIGHTS:
        return None
    enum = torchvision.models.get_model_weights(model)
    if weights is None or weights == "DEFAULT":
        return enum.DEFAULT
    names = [member.name for member in enum]
    if weights not in names:
        raise UnknownBackboneError(
            f"Unknown weights {weights!r} for torchvision model {model!r}. "
            f"Known: {', '.join(names)}, DEFAULT or none (random init)." + suggest(weights, names)
        )
    return enum[weights]


def check(model: str, weights: str | None) -> None:
    """What loading ``torchvision:<model>[:<weights>]`` offline would refuse, without loading."""
    resolved = resolve_weights(model, weights)
    if resolved is not None:
        check_offline(model, resolved)


def weights_file(weights: WeightsEnum) -> str:
    """Where torch.hub caches (and torchvision looks for) the weights file: TORCH_HOME layout."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def check_offline(model: str, weights: WeightsEnum) -> None:
    """Raise WeightsUnavailableError naming the cache path when the weights file is missing."""
    path = weights_file(weights)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(
            f"Weights {weights} for 'torchvision:{model}' are not on disk and downloading is "
            f"disabled. Download {weights.url} and put it at {path} (set TORCH_HOME to use another "
            f"cache root), or use 'torchvision:{model}:none' for a random-init baseline."
        )


def torchvision_preprocess(model: str, weights: WeightsEnum | None) -> Preprocess:
    """Preprocessing of ``weights`` (random init uses the DEFAULT weights' preprocessing)."""
    if weights is None:
        weights = torchvision.models.get_model_weights(model).DEFAULT
    t = weights.transforms()
    return Preprocess(
        resize=int(t.resize_size[0]),
        crop=int(t.crop_size[0]),
        mean=tuple(t.mean),
        std=tuple(t.std),
        interpolation=t.interpolation.value,
    )


def _build_kwargs(
    model: str, weights: WeightsEnum | None, image_size: int | None, num_classes: int | None = None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if weights is None and model in ("googlenet", "inception_v3"):
        # Match the pretrained architecture: no aux heads (eval never uses them), same input transform.
        kwargs.update(aux_logits=False, transform_input=True, init_weights=True)
    if image_size is not None and model.startswith("vit_"):
        kwargs["image_size"] = image_size  # positional embeddings are sized for the input
    if image_size is not None and model.startswith("maxvit_"):
        kwargs["input_size"] = (image_size, image_size)
    return kwargs


def unpickle_reason(err: Exception) -> str:
    """The useful line of torch's weights_only error (without its advice to allow-list globals)."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    reason = found.group(1) if found else text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return reason.split(". Please use")[0].split(" was not an allowed global")[0]


@contextmanager
def _weights_only_load(weights: WeightsEnum | None) -> Iterator[None]:
    """torchvision reads weights through torch.hub, which calls torch.load(weights_only=False): a
    file placed in the cache by hand could run code. TORCH_FORCE_WEIGHTS_ONLY_LOAD makes those
    calls use the restricted unpickler (tensors and plain containers only)."""
    saved = {key: os.environ.pop(key, None)
             for key in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    except (pickle.UnpicklingError, EOFError) as err:
        if weights is None:
            raise
        raise ValueError(
            f"Weights file {weights_file(weights)!r} could not be read with "
            f"torch.load(weights_only=True) ({unpickle_reason(err)}): it is damaged or is not the "
            f"file torchvision publishes. Delete it and download {weights.url} again, or use "
            "':none' for random init."
        ) from err
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def build_classifier(
    model: str, weights: WeightsEnum | None, image_size: int | None = None, num_classes: int | None = None
) -> nn.Module:
    """The full torchvision classifier (B, 3, H, W) -> (B, num_classes), weights loaded, frozen."""
    kwargs = _build_kwargs(model, weights, image_size, num_classes)
    if not kwargs or weights is None:
        with _weights_only_load(weights):
            return freeze(torchvision.models.get_model(model, weights=weights, **kwargs))
    # Size-dependent architectures with pretrained weights: build at the new size, then load.
    net = torchvision.models.get_model(model, weights=None, **kwargs)
    with _weights_only_load(weights):
        state = weights.get_state_dict(progress=False, check_hash=False)
    if model.startswith("vit_"):
        from torchvision.models.vision_transformer import interpolate_embeddings

        state = interpolate_embeddings(image_size, net.patch_size, state)
    net.load_state_dict(state, strict=True)
    return freeze(net)


def find_head(net: nn.Module) -> tuple[nn.Module, str, nn.Module]:
    """(parent, attribute name, module) of the final classification layer.

    The last Linear (or, for squeezenet, Conv2d) inside the classifier container: for
    mobilenet_v3/alexnet/vgg/maxvit that is after the hidden layers; for convnext after
    LayerNorm2d+Flatten; for vit inside ``heads``.
    """
    for attr in _HEAD_ATTRS:
        container = getattr(net, attr, None)
        if isinstance(container, nn.Module):
            break
    else:
        raise ValueError(f"No classifier found in {type(net).__name__} (looked for {_HEAD_ATTRS}).")
    if isinstance(container, (nn.Linear, nn.Conv2d)):
        return net, attr, container
    found = None
    for name, module in container.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            found = name
    if found is None:
        raise ValueError(f"No Linear/Conv2d layer in {type(net).__name__}.{attr}.")
    parent_name, _, leaf = f"{attr}.{found}".rpartition(".")
    return net.get_submodule(parent_name), leaf, net.get_submodule(f"{attr}.{found}")


def _conv_head_as_linear(conv: nn.Conv2d) -> nn.Module:
    """squeezenet: logits = avgpool(relu(conv1x1(x))). With the conv removed the trunk returns
    avgpool(relu(x)) = the pooled conv input; Linear+ReLU on it equals the logits exactly when the
    final feature map is 1x1, and is the pool-before-ReLU approximation otherwise."""
    linear = nn.Linear(conv.in_channels, conv.out_channels)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        linear.bias.copy_(conv.bias)
    return freeze(nn.Sequential(linear, nn.ReLU()))


def separate_head(net: nn.Module) -> tuple[nn.Module, nn.Module, int]:
    """Remove the final layer in place: returns (trunk -> embedding, head, embed_dim)."""
    parent, attr, layer = find_head(net)
    setattr(parent, attr, nn.Identity())
    if isinstance(layer, nn.Conv2d):
        return net, _conv_head_as_linear(layer), layer.in_channels
    return net, layer, layer.in_features


def load_torchvision(
    model: str,
    weights_name: str | None,
    *,
    image_size: int | None = None,
    offline: bool = True,
    num_classes: int | None = None,
) -> LoadedNet:
    """The full classifier for ``torchvision:<model>[:<weights>]``, ready to separate its head
    or to tap."""
    weights = resolve_weights(model, weights_name)
    if weights is not None and offline:
        check_offline(model, weights)
    pre = torchvision_preprocess(model, weights).with_image_size(image_size)
    net = build_classifier(model, weights, image_size, num_classes)
    name = NO_WEIGHTS if weights is None else weights.name
    return LoadedNet(
        spec=f"torchvision:{model}:{name}",
        net=net,
        preprocess=pre,
        weights=name,
        separate_head=separate_head,
        # swin's feature stages are (B, H, W, C); pooled over H, W for ``layer=``.
        channels_last=model.startswith("swin"),
    )
