"""``file:<path>``: a TorchScript module, or a checkpoint dict naming a known architecture.

Checkpoints are read with ``torch.load(weights_only=True)``: no arbitrary pickled code runs. A
checkpoint is ``{"arch": "<spec of a known family>", "state_dict": {...}}`` with optional
``"num_classes"`` (default 1000) and ``"preprocess"`` (a Preprocess dict).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

import torch
from torch import nn

from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.backbones.types import LoadedNet, freeze

# Used when a TorchScript file carries no preprocessing: the common ImageNet recipe.
DEFAULT_PREPROCESS = Preprocess(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
PREPROCESS_EXTRA = "preprocess.json"  # optional TorchScript extra file holding Preprocess.to_dict()


def _no_split(net: nn.Module) -> tuple[nn.Module, None, int]:
    return net, None, 0  # embed_dim found by a dry run in the registry


def read_checkpoint(path: str) -> Any:
    """torch.load with weights_only=True, errors naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(
            f"Backbone file {path!r} is neither a TorchScript module nor a checkpoint that loads "
            f"with torch.load(weights_only=True): {err}. Save a TorchScript module "
            "(torch.jit.save) or a dict {'arch': 'torchvision:resnet18:none', 'state_dict': ...}."
        ) from err


def load_file(path: str, *, image_size: int | None = None) -> tuple[LoadedNet | None, dict | None]:
    """(LoadedNet, None) for TorchScript; (None, checkpoint dict) for an arch checkpoint.

    The registry builds the named architecture for a checkpoint and loads its state dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Backbone file not found: {path!r} (from spec 'file:{path}'). Give the path of a "
            "TorchScript module or a checkpoint saved with torch.save."
        )
    extra = {PREPROCESS_EXTRA: ""}
    try:
        net = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    except RuntimeError:
        net = None
    if net is not None:
        import json

        pre = Preprocess.from_dict(json.loads(extra[PREPROCESS_EXTRA])) if extra[PREPROCESS_EXTRA] else DEFAULT_PREPROCESS
        return (
            LoadedNet(
                spec=f"file:{os.path.abspath(path)}",
                net=freeze(net),
                preprocess=pre.with_image_size(image_size),
                weights=os.path.basename(path),
                split=_no_split,
            ),
            None,
        )
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "arch" not in ckpt or "state_dict" not in ckpt:
        keys = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"Backbone checkpoint {path!r} must be a dict with 'arch' (a backbone spec such as "
            f"'torchvision:resnet18:none') and 'state_dict'. Got {keys} instead."
        )
    return None, ckpt
