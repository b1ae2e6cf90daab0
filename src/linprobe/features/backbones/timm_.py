"""``timm:<model>[:<tag>|:none]`` (optional extra ``linprobe[timm]``; timm is imported lazily).

``<tag>`` picks one of the model's pretrained weights (``timm.list_pretrained('<model>.*')``);
``timm:<model>.<tag>`` (timm's own spelling) is accepted too. Without one: timm's default weights.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from linprobe.features.backbones.preprocess import INTERPOLATIONS, Preprocess
from linprobe.features.backbones.suggest import suggest
from linprobe.features.backbones.types import LoadedNet, UnknownBackboneError, WeightsUnavailableError, freeze

NO_WEIGHTS = "none"
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


def _random_init(weights: str | None) -> bool:
    return weights is not None and weights.lower() == NO_WEIGHTS


def pretrained_name(name: str, weights: str | None) -> str:
    """timm's name for ``timm:<name>[:<weights>]``: '<arch>' (default weights) or '<arch>.<tag>'.

    Raises UnknownBackboneError for an unknown architecture, or a tag timm has no weights for
    (timm would otherwise fall back to the default weights without a word).
    """
    timm = import_timm()
    arch, dot_tag = timm.models.split_model_name_tag(name)
    if not timm.is_model(arch):
        raise UnknownBackboneError(f"Unknown timm model {arch!r}." + suggest(arch, timm.list_models()))
    if dot_tag and weights is not None and not _random_init(weights):
        raise UnknownBackboneError(
            f"Backbone spec 'timm:{name}:{weights}' names two weights tags. Give one: "
            f"'timm:{arch}:{weights}' or 'timm:{name}'."
        )
    tag = dot_tag or ("" if weights is None or _random_init(weights) else weights)
    if not tag:
        return arch
    tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
    if tag not in tags:
        known = ", ".join(tags) if tags else "none (timm has no pretrained weights for it)"
        raise UnknownBackboneError(
            f"Unknown weights tag {tag!r} for timm model {arch!r}. Known tags: {known}; or "
            f"'timm:{arch}' for the default weights, 'timm:{arch}:none' for random init."
            + suggest(tag, tags)
        )
    return f"{arch}.{tag}"


def check_weights(name: str, weights: str | None, *, offline: bool = True) -> str | None:
    """The local weights file of ``timm:<name>[:weights]`` (None: random init, or downloading
    allowed); errors name the model, the tag or the folder where the weights belong."""
    model_name = pretrained_name(name, weights)
    if not offline or _random_init(weights):
        return None
    path, folder = cached_weights(model_name)
    if path is None:
        spec = f"timm:{name}" + (f":{weights}" if weights else "")
        raise WeightsUnavailableError(
            f"Weights for {spec!r} are not on disk and downloading is disabled. Put the "
            f"Hugging Face snapshot under {folder} (HF_HOME layout), or use 'timm:{name}:none'."
        )
    return path


def load_timm(
    name: str, weights: str | None, *, image_size: int | None = None, offline: bool = True
) -> LoadedNet:
    """Full timm classifier; pretrained (default weights, or the tag) unless ``weights`` is 'none'."""
    timm = import_timm()
    pretrained = not _random_init(weights)
    kwargs: dict[str, Any] = {}
    path = check_weights(name, weights, offline=offline)
    model_name = pretrained_name(name, weights)
    if path is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": path}
    if image_size is not None:
        kwargs["img_size"] = image_size  # ViT-style models size their position embeddings
    try:
        net = timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except TypeError:
        kwargs.pop("img_size", None)  # convnets take any size and reject the argument
        net = timm.create_model(model_name, pretrained=pretrained, **kwargs)
    suffix = (f":{weights}" if weights else "") if pretrained else f":{NO_WEIGHTS}"
    return LoadedNet(
        spec=f"timm:{name}{suffix}",
        net=freeze(net),
        preprocess=timm_preprocess(net).with_image_size(image_size),
        weights=(getattr(net, "pretrained_cfg", {}) or {}).get("tag", "default") if pretrained else "none",
        separate_head=_separate_timm_head,
    )
