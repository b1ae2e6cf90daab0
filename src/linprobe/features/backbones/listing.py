"""Rows for ``list_backbones``: what each family can load, its embedding size, and whether its
weights are on disk. Models are built on the meta device (shapes only: no memory, no init)."""

from __future__ import annotations

import fnmatch
import functools
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torchvision
from torch.overrides import TorchFunctionMode

from linprobe.features.backbones import lite, timm_, torchvision_
from linprobe.features.backbones.efficientnet_lite import LITE_CONFIGS, EfficientNetLite

M = TypeVar("M", bound=torch.nn.Module)
# Factories that allocate storage (parameters, buffers); value factories (arange, linspace,
# tensor) are left out on purpose, see _AllocateOnMeta.
_ALLOCATORS = frozenset({torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full,
                         torch.rand, torch.randn, torch.randint})


class _AllocateOnMeta(TorchFunctionMode):
    """Allocating factories default to the meta device; computed values stay on the CPU.

    For constructors that read tensor values back (regnet computes its stage widths with
    ``torch.arange`` and ``.tolist()``), which ``with torch.device("meta")`` cannot build.
    Like that context, a function mode is local to the thread that enters it.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _ALLOCATORS and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def build_on_meta(build: Callable[[], M]) -> M:
    """``build()`` with its parameters and buffers on the meta device (this thread only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet/inception init notices
        try:
            with torch.device("meta"):
                return build()
        except (NotImplementedError, RuntimeError):  # "Cannot copy out of meta tensor"
            with _AllocateOnMeta():
                return build()


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


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


def lite_rows(pattern: str | None, include_random: bool = False) -> list[dict]:
    """``lite:`` specs (pip-packaged weights only; ``include_random`` does not apply)."""
    rows = []
    for name in _matching(lite.LITE_MODELS, pattern):
        net = build_on_meta(functools.partial(EfficientNetLite, LITE_CONFIGS[name]))
        rows.append(_row(f"lite:{name}", "lite", name, "imagenet", net._fc.in_features, _count(net),
                         lite.weights_path(name)))
    return rows


# A process-wide cache is right here: the answer depends only on the installed torchvision
# (no files, no user data), and building all ~80 models takes seconds.
@functools.lru_cache(maxsize=None)
def torchvision_shape(name: str) -> tuple[int, int]:
    """(embedding dim, random-init parameter count) of a torchvision model, from a meta build."""
    net = build_on_meta(functools.partial(torchvision.models.get_model, name, weights=None))
    _, _, head = torchvision_.find_head(net)
    dim = head.in_features if isinstance(head, torch.nn.Linear) else head.in_channels
    return dim, _count(net)


def torchvision_rows(pattern: str | None, include_random: bool = False) -> list[dict]:
    """``torchvision:<model>:<WEIGHTS>`` specs, plus ``:none`` when ``include_random``."""
    rows = []
    for name in _matching(torchvision_.model_names(), pattern):
        dim, random_params = torchvision_shape(name)
        for weights in torchvision.models.get_model_weights(name):
            params = int(weights.meta.get("num_params", 0))
            path = torchvision_.weights_file(weights)
            rows.append(_row(f"torchvision:{name}:{weights.name}", "torchvision", name, weights.name, dim, params, path))
        if include_random:
            row = _row(f"torchvision:{name}:none", "torchvision", name, "none", dim, random_params, None)
            row["offline"] = True  # random init needs no file
            rows.append(row)
    return rows


def timm_rows(pattern: str | None, include_random: bool = False) -> list[dict]:
    """``timm:<model>`` specs (default weights); give a ``pattern``, timm has over 1000 models."""
    timm = timm_.import_timm()
    rows = []
    for name in timm.list_models(pattern or "*", pretrained=False):
        net = build_on_meta(functools.partial(timm.create_model, name, pretrained=False))
        dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
        path, _ = timm_.cached_weights(name)
        rows.append(_row(f"timm:{name}", "timm", name, "default", dim, _count(net), path))
    return rows


def format_backbones(rows: list[dict]) -> str:
    """Plain-text table of :func:`list_backbones` rows (what ``linprobe backbones`` prints)."""
    header = ("spec", "embed_dim", "params (M)", "offline")
    lines = [
        (r["spec"], str(r["embed_dim"]), f"{r['num_params'] / 1e6:.1f}", "yes" if r["offline"] else "no")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*row).rstrip() for row in [header, *lines])
