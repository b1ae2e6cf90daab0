"""The network a fine-tune arm trains: the registry's backbone (the probes' embedding) + a new
linear head; which of its parameters train; saving and loading it without pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.config import is_random_init


class FinetuneNet(nn.Module):
    """(B, 3, crop, crop) normalised float -> (B, C) logits: ``trunk`` gives the (B, D)
    embedding the probes see, ``head`` is a new ``Linear(D, C)``."""

    def __init__(self, trunk: nn.Module, embed_dim: int, n_classes: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(embed_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.trunk(x), 1))


SCRATCH_BN_MOMENTUM = 0.1   # torch's BatchNorm default


def arm_spec(spec: str, arm: str) -> str:
    """The backbone spec an arm loads: ``finetune`` the pretrained spec itself, ``scratch`` the
    same architecture with random init (``<family>:<model>:none``)."""
    from linprobe.features.backbones.registry import parse_spec

    family, model, _ = parse_spec(spec)
    if arm == "finetune":
        if is_random_init(spec):
            raise ValueError(f"The 'finetune' arm trains pretrained weights, but backbone {spec!r} "
                             "is random-init; use the arm 'scratch' for it, or a pretrained spec")
        return spec
    if family == "file":
        raise ValueError(f"The 'scratch' arm needs the architecture of backbone {spec!r} without "
                         "its weights, which a file: backbone cannot give; use arm 'finetune'")
    return f"{family}:{model}:none"


def build_net(spec: str, arm: str, n_classes: int, *, image_size: int | None,
              layer: str | None, init_seed: int | None, seed: int) -> tuple[FinetuneNet, Any]:
    """(the network, the loaded Backbone record) for ``arm`` on ``spec``; the random-init trunk
    (``scratch``) is seeded by ``init_seed`` (as extraction's is) and the head by ``seed``."""
    from linprobe.features.extract import seeded_backbone

    loaded = arm_spec(spec, arm)
    bb = seeded_backbone(loaded, image_size=image_size, layer=layer,
                         init_seed=init_seed if is_random_init(loaded) else None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FinetuneNet(bb.model, bb.embed_dim, n_classes)
    for p in net.parameters():  # the registry hands out frozen backbones
        p.requires_grad_(True)
    if arm == "scratch":
        # Random-init running statistics are far from the trained network's; TF-ported
        # momenta (EfficientNet-Lite: 0.01) need thousands of steps to forget them, and eval
        # mode then predicts one class. torch's default 0.1 catches up within an epoch.
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.momentum is not None:
                m.momentum = max(m.momentum, SCRATCH_BN_MOMENTUM)
    return net, bb


def blocks(trunk: nn.Module) -> list[nn.Module]:
    """The trunk's repeated blocks in order (residual / MBConv / transformer blocks): children of
    a Sequential or ModuleList that share their class with a sibling, outermost only."""
    found: list[nn.Module] = []
    inside: set[int] = set()
    for module in trunk.modules():
        if id(module) in inside or not isinstance(module, (nn.Sequential, nn.ModuleList)):
            continue
        kids = [m for m in module.children() if any(True for _ in m.parameters())]
        kinds = [type(m) for m in kids]
        repeated = [m for m in kids if kinds.count(type(m)) > 1 and next(m.children(), None)]
        for m in repeated:
            found.append(m)
            inside.update(id(sub) for sub in m.modules())
    return found


def set_trainable(net: FinetuneNet, unfreeze: int | None) -> tuple[int, int]:
    """Train the head and the trunk from its ``unfreeze``-th last block on (None: all of it;
    0: the head alone). Returns (trainable parameters, blocks). Raises ValueError when the trunk
    has fewer blocks."""
    found = blocks(net.trunk)
    if unfreeze is not None and unfreeze > len(found):
        raise ValueError(f"The 'unfreeze' parameter asks for the last {unfreeze} blocks, but this "
                         f"backbone has {len(found)}; use a number <= {len(found)} or 'all'")
    if unfreeze is None:
        first = 0
    elif unfreeze == 0:
        first = None
    else:  # registration order follows the forward: everything from the block on trains
        start = id(next(found[-unfreeze].parameters()))
        first = [id(p) for p in net.trunk.parameters()].index(start)
    for i, p in enumerate(net.trunk.parameters()):
        p.requires_grad_(first is not None and i >= first)
    for p in net.head.parameters():
        p.requires_grad_(True)
    return sum(p.numel() for p in net.parameters() if p.requires_grad), len(found)


def train_mode(net: FinetuneNet) -> None:
    """train(), but frozen normalisation layers keep their running statistics (eval)."""
    net.train()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and \
                not any(p.requires_grad for p in m.parameters(recurse=False)):
            m.eval()


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: weights decayed, biases and norm scales (1-D) not."""
    params = [p for p in net.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def save_bytes(net: FinetuneNet, meta: dict[str, Any]) -> bytes:
    """The network as safetensors bytes (tensors only, no code); ``meta`` JSON-encoded per key."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return save(state, metadata={k: json.dumps(v) for k, v in meta.items()})


def load_finetuned(path: str | Path) -> tuple[FinetuneNet, dict[str, Any]]:
    """A saved fine-tune network (eval mode) and its metadata (spec, arm, class_names,
    preprocess, layer, ...). The architecture is rebuilt from the spec with random init, then
    the stored tensors are loaded: nothing is unpickled."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    pre = Preprocess.from_dict(meta["preprocess"])
    # The architecture only: random init (a file: spec loads its own module, overwritten below).
    arm = "finetune" if meta["spec"].startswith("file:") else "scratch"
    net, _ = build_net(meta["spec"], arm, len(meta["class_names"]), image_size=pre.crop,
                       layer=meta.get("layer"), init_seed=0, seed=0)
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.eval(), meta
