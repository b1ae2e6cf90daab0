"""Backbone specs -> loaded backbones: ``load_backbone`` and ``list_backbones``.

Spec grammar: ``torchvision:<model>[:<WEIGHTS>|:none]``, ``lite:efficientnet-lite0|1|2``,
``timm:<model>[:none]``, ``file:<path>``.
"""

from __future__ import annotations

import os

import torch

from linprobe.features.backbones import file_, lite, timm_, torchvision_
from linprobe.features.backbones.layers import LayerEmbedding
from linprobe.features.backbones.suggest import suggest
from linprobe.features.backbones.types import (
    Backbone,
    EmbeddingModel,
    LoadedNet,
    UnknownBackboneError,
    count_params,
    freeze,
)

FAMILIES: tuple[str, ...] = ("torchvision", "lite", "timm", "file")


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """'family:model[:weights]' -> (family, model, weights or None). ``file:`` keeps the whole path."""
    if not isinstance(spec, str) or ":" not in spec:
        raise UnknownBackboneError(
            f"Backbone spec must look like 'family:model' with family one of {FAMILIES} "
            f"(e.g. 'torchvision:resnet18', 'lite:efficientnet-lite0'). Got {spec!r} instead."
        )
    family, _, rest = spec.partition(":")
    if family not in FAMILIES:
        raise UnknownBackboneError(
            f"Unknown backbone family {family!r} in spec {spec!r}. Known: {', '.join(FAMILIES)}."
            + suggest(family, FAMILIES)
        )
    if family == "file":
        return family, rest, None
    model, _, weights = rest.partition(":")
    if not model:
        raise UnknownBackboneError(f"Backbone spec {spec!r} names no model after '{family}:'.")
    return family, model, weights or None


def check_spec(spec: str) -> None:
    """Parse ``spec`` and check, without loading or downloading anything, that its weights are on
    disk (``lite``: the pip package; ``torchvision``/``timm``: the torch hub / Hugging Face cache;
    ``file``: the file). Raises the errors :func:`load_backbone` would, naming the fix."""
    family, model, weights = parse_spec(spec)
    if family == "lite":
        if weights is not None:
            raise UnknownBackboneError(_LITE_NO_WEIGHTS.format(spec=spec))
        lite.check_weights(model)
    elif family == "torchvision":
        resolved = torchvision_.resolve_weights(model, weights)
        if resolved is not None:
            torchvision_.check_offline(model, resolved)
    elif family == "timm":
        timm_.check_weights(model, weights)
    else:
        file_.load_file(model)  # format and every field checked; nothing runs, nothing is built


_LITE_NO_WEIGHTS = ("'lite:' backbones take no weights part (ImageNet weights ship with the "
                    "package). Got {spec!r}.")


def _load_net(spec: str, image_size: int | None, offline: bool) -> LoadedNet:
    family, model, weights = parse_spec(spec)
    if family == "lite":
        if weights is not None:
            raise UnknownBackboneError(_LITE_NO_WEIGHTS.format(spec=spec))
        return lite.load_lite(model, image_size=image_size)
    if family == "torchvision":
        return torchvision_.load_torchvision(model, weights, image_size=image_size, offline=offline)
    if family == "timm":
        return timm_.load_timm(model, weights, image_size=image_size, offline=offline)
    return _load_checkpoint(file_.load_file(model), image_size)


def _load_checkpoint(ckpt: file_.Checkpoint, image_size: int | None) -> LoadedNet:
    """A torchvision architecture (random init) with the checkpoint's state dict loaded strictly."""
    _, arch, _ = parse_spec(ckpt.arch)  # file_ checked it is a torchvision spec
    try:
        loaded = torchvision_.load_torchvision(
            arch, "none", image_size=image_size, num_classes=ckpt.num_classes
        )
    except UnknownBackboneError as err:
        raise UnknownBackboneError(f"Backbone file {ckpt.path!r}: 'arch': {err}") from err
    try:
        loaded.net.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"Backbone file {ckpt.path!r}: 'state_dict' does not fit 'arch' {ckpt.arch!r} with "
            f"{ckpt.num_classes} classes (set 'num_classes' if the head differs): {err}"
        ) from err
    if ckpt.preprocess is not None:
        loaded.preprocess = ckpt.preprocess.with_image_size(image_size)
    loaded.spec = f"file:{os.path.abspath(ckpt.path)}"
    loaded.weights = os.path.basename(ckpt.path)
    return loaded


def _probe_dim(spec: str, model: torch.nn.Module, crop: int) -> int:
    """Embedding size by one forward pass of a (1, 3, crop, crop) input (for modules that do not declare it)."""
    try:
        with torch.inference_mode():
            return int(model(torch.zeros(1, 3, crop, crop)).shape[1])
    except Exception as err:  # any failure here means the module cannot embed such images
        raise ValueError(
            f"Backbone {spec!r} failed on a (1, 3, {crop}, {crop}) input: {err}. Check the model's "
            "expected input size (the 'image_size' parameter)."
        ) from err


def load_backbone(
    spec: str,
    *,
    image_size: int | None = None,
    layer: str | None = None,
    pretrained_ok_offline: bool = True,
) -> Backbone:
    """Load a frozen backbone: ``model`` maps (B, 3, crop, crop) -> (B, embed_dim) float32.

    image_size: model input size in px (crop); resize keeps the weights' resize/crop ratio.
    layer: None = input of the final classifier (``head`` reproduces the logits); otherwise a
        module name (e.g. 'layer3', 'features.4') whose output is globally average-pooled.
    pretrained_ok_offline: True = use only weights already on disk, never download; a missing
        file raises WeightsUnavailableError naming where to put it. False lets torchvision/timm
        download.
    """
    loaded = _load_net(spec, image_size, pretrained_ok_offline)
    num_params = count_params(loaded.net)
    if layer is None:
        trunk, head, dim = loaded.separate_head(loaded.net)
        model = freeze(EmbeddingModel(trunk))
    else:
        model, head, dim = freeze(LayerEmbedding(loaded.net, layer, loaded.channels_last)), None, 0
    if not dim:
        dim = _probe_dim(loaded.spec, model, loaded.preprocess.crop)
    return Backbone(
        spec=loaded.spec,
        model=model,
        head=head,
        embed_dim=dim,
        preprocess=loaded.preprocess,
        weights=loaded.weights,
        num_params=num_params,
        layer=layer,
    )
