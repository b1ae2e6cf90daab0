"""The loaded-backbone record and the errors the registry raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from linprobe.features.backbones.preprocess import Preprocess


class UnknownBackboneError(ValueError):
    """A backbone spec names no known family or model (the message lists close matches)."""


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights are not on disk and downloading is not allowed (message names the path)."""


@dataclass
class Backbone:
    """A frozen model that maps images to embeddings, plus what belongs with it.

    ``model``: eval mode, (B, 3, crop, crop) float -> (B, embed_dim) float32.
    ``head``: the model's final classifier; ``head(embedding)`` == the model's own logits, or None
    when there is none (``file:`` modules, intermediate ``layer``, timm).
    """

    spec: str
    model: torch.nn.Module
    head: torch.nn.Module | None
    embed_dim: int
    preprocess: Preprocess
    weights: str
    num_params: int
    layer: str | None = None


# Separates a full classifier's final layer in place: (trunk -> (B, D), head or None, D).
HeadSeparator = Callable[[torch.nn.Module], "tuple[torch.nn.Module, torch.nn.Module | None, int]"]


@dataclass
class LoadedNet:
    """A family loader's result: the full network (frozen) before choosing where to tap it."""

    spec: str
    net: torch.nn.Module
    preprocess: Preprocess
    weights: str
    separate_head: HeadSeparator
    channels_last: bool = False  # intermediate 4-D outputs are (B, H, W, C), e.g. swin


class EmbeddingModel(torch.nn.Module):
    """Wrap a trunk so the output is always a (B, D) float32 tensor (flattened, upcast from autocast)."""

    def __init__(self, trunk: torch.nn.Module) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.trunk(x), 1).float()


def count_params(module: torch.nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in module.parameters())


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """eval() and no gradients: linprobe never trains the backbone."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
