"""Backbone registry: spec string -> frozen model returning (B, D) embeddings + its preprocessing.

Specs: ``torchvision:<model>[:<WEIGHTS>|:none]``, ``lite:efficientnet-lite0|1|2``,
``timm:<model>[:<tag>|:none]`` (optional extra), ``file:<path>``; one entry per family in
``registry``'s table.
"""

from linprobe.features.backbones.layers import UnknownLayerError
from linprobe.features.backbones.listing import format_backbones
from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.backbones.registry import (
    DEFAULT_LISTED,
    FAMILIES,
    check_spec,
    list_backbones,
    load_backbone,
    parse_spec,
)
from linprobe.features.backbones.types import Backbone, UnknownBackboneError, WeightsUnavailableError

__all__ = [
    "DEFAULT_LISTED",
    "FAMILIES",
    "Backbone",
    "Preprocess",
    "UnknownBackboneError",
    "UnknownLayerError",
    "WeightsUnavailableError",
    "check_spec",
    "format_backbones",
    "list_backbones",
    "load_backbone",
    "parse_spec",
]
