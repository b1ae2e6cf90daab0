"""``list_backbones``: what can be loaded, its embedding size, and whether its weights are on disk."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import warnings
from collections.abc import Iterator

import torch
import torchvision

from linprobe.features.backbones import lite, timm_, torchvision_
from linprobe.features.backbones.efficientnet_lite import LITE_CONFIGS, EfficientNetLite

DEFAULT_FAMILIES: tuple[str, ...] = ("lite", "torchvision")


@contextlib.contextmanager
def _empty_weights() -> Iterator[None]:
    """Build modules with parameters/buffers on the meta device (shapes only, no memory or init).

    Unlike ``with torch.device("meta")`` this leaves the constructors' own arithmetic on the CPU
    (regnet computes its widths with tensors and .tolist()).
    """
    register_parameter = torch.nn.Module.register_parameter
    register_buffer = torch.nn.Module.register_buffer

    def to_meta_param(self, name, param):
        if param is not None:
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def to_meta_buffer(self, name, tensor, persistent=True):
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    torch.nn.Module.register_parameter = to_meta_param
    torch.nn.Module.register_buffer = to_meta_buffer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # googlenet/inception init notices
            yield
    finally:
        torch.nn.Module.register_parameter = register_parameter
        torch.nn.Module.register_buffer = register_buffer


def _row(spec: str, family: str, model: str, weights: str, dim: int, params: int, path: str | None) -> dict:
    return {
        "spec": spec,
        "family": family,
        "model": model,
        "weights": weights,
        "embed_dim": dim,
        "num_params": params,
        "offline": path is not None and os.path.isfile(path),
        "weights_path": path,
    }


def _matching(names: list[str] | tuple[str, ...], pattern: str | None) -> list[str]:
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def _lite_rows(pattern: str | None) -> list[dict]:
    rows = []
    for name in _matching(lite.LITE_MODELS, pattern):
        with _empty_weights():
            net = EfficientNetLite(LITE_CONFIGS[name])
        params = sum(p.numel() for p in net.parameters())
        rows.append(_row(f"lite:{name}", "lite", name, "imagenet", net._fc.in_features, params, lite.weights_path(name)))
    return rows


def _torchvision_rows(pattern: str | None, include_random: bool) -> list[dict]:
    rows = []
    for name in _matching(torchvision_.model_names(), pattern):
        with _empty_weights():
            net = torchvision.models.get_model(name, weights=None)
        _, _, head = torchvision_.find_head(net)
        dim = head.in_features if isinstance(head, torch.nn.Linear) else head.in_channels
        for weights in torchvision.models.get_model_weights(name):
            params = int(weights.meta.get("num_params", 0))
            path = torchvision_.weights_file(weights)
            rows.append(_row(f"torchvision:{name}:{weights.name}", "torchvision", name, weights.name, dim, params, path))
        if include_random:
            params = sum(p.numel() for p in net.parameters())
            row = _row(f"torchvision:{name}:none", "torchvision", name, "none", dim, params, None)
            row["offline"] = True  # random init needs no file
            rows.append(row)
    return rows


def _timm_rows(pattern: str | None) -> list[dict]:
    timm = timm_.import_timm()
    rows = []
    for name in timm.list_models(pattern or "*", pretrained=False):
        with _empty_weights():
            net = timm.create_model(name, pretrained=False)
        params = sum(p.numel() for p in net.parameters())
        dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
        path, _ = timm_.cached_weights(name)
        rows.append(_row(f"timm:{name}", "timm", name, "default", dim, params, path))
    return rows


def list_backbones(
    families: tuple[str, ...] = DEFAULT_FAMILIES, *, pattern: str | None = None, include_random: bool = False
) -> list[dict]:
    """One dict per loadable spec: spec, family, model, weights, embed_dim, num_params, offline, weights_path.

    families: any of 'lite', 'torchvision', 'timm' (timm must be installed; with ``pattern`` to
        keep the list short). pattern: shell-style filter on the model name, e.g. 'resnet*'.
    include_random: also list ``torchvision:<model>:none`` (random init, always offline).
    """
    unknown = set(families) - {"lite", "torchvision", "timm"}
    if unknown:
        raise ValueError(
            f"The 'families' parameter of list_backbones must contain only 'lite', 'torchvision', "
            f"'timm'. Got {sorted(unknown)} instead."
        )
    rows: list[dict] = []
    if "lite" in families:
        rows += _lite_rows(pattern)
    if "torchvision" in families:
        rows += _torchvision_rows(pattern, include_random)
    if "timm" in families:
        rows += _timm_rows(pattern)
    return rows
