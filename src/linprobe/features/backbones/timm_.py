"""``timm:<model>[:none]`` (optional extra ``linprobe[timm]``; timm is imported lazily)."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from linprobe.features.backbones.preprocess import INTERPOLATIONS, Preprocess
from linprobe.features.backbones.suggest import suggest
from linprobe.features.backbones.types import LoadedNet, UnknownBackboneError, WeightsUnavailableError, freeze

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def import_timm() -> Any:
    """timm, or an ImportError that says how to install the extra."""
    try:
        import timm
    except ImportError as err:
        raise ImportError(
            "Backbone specs 'timm:<model>' need the optional timm extra: pip install 'linprobe[timm]'."
        ) from err
    return timm


def cached_weights(name: str) -> tuple[str | None, str]:
    """(local weights file or None, the Hugging Face cache folder where it belongs)."""
    timm = import_timm()
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None, "(no Hugging Face hub id for this model in timm)"
    folder = os.path.join(constants.HF_HUB_CACHE, "models--" + repo.replace("/", "--"))
    for filename in _WEIGHT_FILES:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return found, folder
    return None, folder


def timm_preprocess(net: nn.Module) -> Preprocess:
    """The model's data config (``resolve_data_config``): crop = input size, resize = crop / crop_pct."""
    timm = import_timm()
    cfg = timm.data.resolve_data_config({}, model=net)
    crop = int(cfg["input_size"][-1])
    interpolation = cfg.get("interpolation", "bicubic")
    return Preprocess(
        resize=int(math.floor(crop / cfg.get("crop_pct", 0.875))),
        crop=crop,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        # timm also knows "random"/"nearest" (training-time); bicubic is its default for eval.
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic",
    )


class _PreLogits(nn.Module):
    """(B, 3, H, W) -> (B, D): timm's pooled pre-logits (forward_head with pre_logits=True)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)


def _separate_timm_head(net: nn.Module) -> tuple[nn.Module, nn.Module | None, int]:
    head = net.get_classifier()
    dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
    return _PreLogits(net), head if isinstance(head, nn.Linear) else None, dim


def check_weights(name: str, weights: str | None, *, offline: bool = True) -> str | None:
    """The local weights file of ``timm:<name>[:weights]`` (None: random init, or downloading
    allowed); errors name the model or the folder where the weights belong."""
    timm = import_timm()
    if not timm.is_model(name):
        known = timm.list_models()
        raise UnknownBackboneError(f"Unknown timm model {name!r}." + suggest(name, known))
    if not offline or (weights is not None and weights.lower() == "none"):
        return None
    path, folder = cached_weights(name)
    if path is None:
        raise WeightsUnavailableError(
            f"Weights for 'timm:{name}' are not on disk and downloading is disabled. Put the "
            f"Hugging Face snapshot under {folder} (HF_HOME layout), or use 'timm:{name}:none'."
        )
    return path


def load_timm(
    name: str, weights: str | None, *, image_size: int | None = None, offline: bool = True
) -> LoadedNet:
    """Full timm classifier; pretrained unless ``weights`` is 'none'."""
    timm = import_timm()
    pretrained = weights is None or weights.lower() != "none"
    kwargs: dict[str, Any] = {}
    path = check_weights(name, weights, offline=offline)
    if path is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": path}
    if image_size is not None:
        kwargs["img_size"] = image_size  # ViT-style models size their position embeddings
    try:
        net = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError:
        kwargs.pop("img_size", None)  # convnets take any size and reject the argument
        net = timm.create_model(name, pretrained=pretrained, **kwargs)
    return LoadedNet(
        spec=f"timm:{name}" + ("" if pretrained else ":none"),
        net=freeze(net),
        preprocess=timm_preprocess(net).with_image_size(image_size),
        weights=(getattr(net, "pretrained_cfg", {}) or {}).get("tag", "default") if pretrained else "none",
        separate_head=_separate_timm_head,
    )
