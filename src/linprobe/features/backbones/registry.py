"""Backbone specs -> loaded backbones, through one table of families.

Spec grammar: ``<family>:<model>[:<weights>]``, e.g. ``torchvision:resnet18:IMAGENET1K_V1``,
``lite:efficientnet-lite0``, ``timm:vit_small_patch16_224:augreg_in21k_ft_in1k``, ``file:<path>``
(the path keeps any ':'). A new family is one module with ``check``/``load`` (and optionally a
row lister in ``listing``) plus one entry in ``_TABLE``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from linprobe.features.backbones import file_, lite, listing, timm_, torchvision_
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


@dataclass(frozen=True)
class Family:
    """How the specs of one family are checked, loaded and listed.

    check(model, weights): raises what ``load`` would (unknown model or weights, weights not on
        disk), without loading or downloading anything.
    load(model, weights, *, image_size, offline): the full network, frozen.
    rows(pattern, include_random): ``list_backbones`` rows; None when the family has no
        catalogue (``file:``).
    listed: listed by ``list_backbones``/``linprobe backbones`` without being asked for.
    weights_part: False when everything after '<family>:' is the model (a path may hold ':').
    """

    name: str
    check: Callable[[str, str | None], object]
    load: Callable[..., LoadedNet]
    rows: Callable[[str | None, bool], list[dict]] | None = None
    listed: bool = False
    weights_part: bool = True


_TABLE: dict[str, Family] = {f.name: f for f in (
    Family("lite", lite.check, lite.load_lite, listing.lite_rows, listed=True),
    Family("torchvision", torchvision_.check, torchvision_.load_torchvision, listing.torchvision_rows,
           listed=True),
    Family("timm", timm_.check_weights, timm_.load_timm, listing.timm_rows),
    Family("file", file_.check, file_.load, weights_part=False),
)}
FAMILIES: tuple[str, ...] = tuple(_TABLE)
DEFAULT_LISTED: tuple[str, ...] = tuple(name for name, f in _TABLE.items() if f.listed)


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """'family:model[:weights]' -> (family, model, weights or None). ``file:`` keeps the whole path."""
    if not isinstance(spec, str) or ":" not in spec:
        raise UnknownBackboneError(
            f"Backbone spec must look like 'family:model' with family one of {tuple(_TABLE)} "
            f"(e.g. 'torchvision:resnet18', 'lite:efficientnet-lite0'). Got {spec!r} instead."
        )
    family, _, rest = spec.partition(":")
    if family not in _TABLE:
        raise UnknownBackboneError(
            f"Unknown backbone family {family!r} in spec {spec!r}. Known: {', '.join(_TABLE)}."
            + suggest(family, _TABLE)
        )
    if not _TABLE[family].weights_part:
        return family, rest, None
    model, _, weights = rest.partition(":")
    if not model:
        raise UnknownBackboneError(f"Backbone spec {spec!r} names no model after '{family}:'.")
    return family, model, weights or None


def check_spec(spec: str) -> None:
    """Parse ``spec`` and check, without loading or downloading anything, that its weights are on
    disk (``lite``: the pip package; ``torchvision``/``timm``: the torch hub / Hugging Face cache;
    ``file``: the file, read and checked). Raises the errors :func:`load_backbone` would."""
    family, model, weights = parse_spec(spec)
    _TABLE[family].check(model, weights)


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
    family, model_name, weights = parse_spec(spec)
    loaded = _TABLE[family].load(model_name, weights, image_size=image_size, offline=pretrained_ok_offline)
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


def list_backbones(
    families: tuple[str, ...] = DEFAULT_LISTED, *, pattern: str | None = None, include_random: bool = False
) -> list[dict]:
    """One dict per loadable spec: spec, family, model, weights, embed_dim, num_params, offline, weights_path.

    families: names of families with a catalogue: 'lite', 'torchvision', 'timm' ('timm' must be
        installed; give a ``pattern`` to keep its list short); rows come in table order. pattern: shell-style filter on the model name, e.g.
        'resnet*'. include_random: also list ``torchvision:<model>:none`` (random init, offline).
    """
    listable = [name for name, f in _TABLE.items() if f.rows is not None]
    unknown = sorted(set(families) - set(listable))
    if unknown:
        raise ValueError(
            f"The 'families' parameter of list_backbones must contain only "
            f"{', '.join(map(repr, listable))}. Got {unknown} instead."
        )
    rows: list[dict] = []
    for name, family in _TABLE.items():
        if name in families and family.rows is not None:
            rows += family.rows(pattern, include_random)
    return rows
