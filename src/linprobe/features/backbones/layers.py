"""``layer=``: embeddings from a named intermediate module, globally average-pooled."""

from __future__ import annotations

import torch
from torch import nn

from linprobe.features.backbones.suggest import suggest


class UnknownLayerError(ValueError):
    """The requested layer is not a module of the backbone (message lists close matches)."""


class _Stop(Exception):
    """Raised by the hook once the layer's output is captured: the rest of the net never runs."""


def global_pool(out: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Pool a module output to (B, D).

    (B, C, H, W) -> mean over H, W ((B, H, W, C) when ``channels_last``); (B, T, C) token
    sequences -> mean over tokens; (B, D) unchanged.
    """
    if out.ndim == 4:
        return out.mean(dim=(1, 2) if channels_last else (2, 3))
    if out.ndim == 3:
        return out.mean(dim=1)
    if out.ndim == 2:
        return out
    raise ValueError(f"Cannot pool a layer output of shape {tuple(out.shape)} to (B, D).")


def layer_names(net: nn.Module) -> list[str]:
    """Names accepted by ``layer=`` (every named submodule)."""
    return [name for name, _ in net.named_modules() if name]


class LayerEmbedding(nn.Module):
    """(B, 3, H, W) -> (B, D): the pooled output of ``net.<layer>``.

    A forward hook captures the output and stops the forward pass there, so layers after it cost
    nothing; works for any nn.Module (no FX tracing, which the TF-"same" convs would defeat).
    """

    def __init__(self, net: nn.Module, layer: str, channels_last: bool = False) -> None:
        super().__init__()
        try:
            target = net.get_submodule(layer)
        except AttributeError:
            raise UnknownLayerError(
                f"The 'layer' parameter names no module of this backbone: {layer!r}."
                + suggest(layer, layer_names(net))
                + " Use None for the penultimate layer."
            ) from None
        self.net = net
        self.layer = layer
        self.channels_last = channels_last
        self._captured: torch.Tensor | None = None
        target.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if isinstance(output, (tuple, list)):
            output = output[0]
        self._captured = output
        raise _Stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            self.net(x)
        except _Stop:
            pass
        out, self._captured = self._captured, None
        if out is None:
            raise RuntimeError(f"Layer {self.layer!r} was not executed by the forward pass.")
        return torch.flatten(global_pool(out, self.channels_last), 1).float()
