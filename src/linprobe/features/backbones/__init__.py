"""Backbone registry: spec string -> frozen model returning (B, D) embeddings + its preprocessing.

Specs: ``torchvision:<model>[:<WEIGHTS>|:none]``, ``lite:efficientnet-lite0|1|2``,
``timm:<model>[:none]`` (optional extra), ``file:<path>``.
"""

from linprobe.features.backbones.layers import UnknownLayerError
from linprobe.features.backbones.listing import format_backbones, list_backbones
from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.backbones.registry import FAMILIES, check_spec, load_backbone, parse_spec
from linprobe.features.backbones.types import Backbone, UnknownBackboneError, WeightsUnavailableError

__all__ = [
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
