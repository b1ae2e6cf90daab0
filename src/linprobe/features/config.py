"""Extraction and data-split settings: their defaults, allowed choices and validation.

The one home of these facts: :func:`~linprobe.features.extract.extract_embeddings` takes an
:class:`ExtractConfig` and a :class:`SplitConfig`, and params.yaml (``pipeline.params``) and
``linprobe extract`` (``pipeline.cli``) read their defaults and choice lists from here.
No torch: ``linprobe --help`` and ``linprobe report`` import this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from linprobe.cpus import parse_threads
from linprobe.features.croploss import RESIZE_MODES

__all__ = [
    "DEVICES", "ENGINES", "ON_ERROR", "PRECISIONS", "PRECISION_ALIASES", "RESIZE_MODES",
    "DEFAULT_INIT_SEED",
    "ExtractConfig", "SplitConfig", "is_random_init", "check_init_seed", "with_options",
]

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")  # the library also takes "cuda:N"
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
PRECISION_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ON_ERROR: tuple[str, ...] = ("fail", "skip")
# Who runs the shards of `linprobe extract` (pipeline.ray_engine); under torchrun the ranks do.
ENGINES: tuple[str, ...] = ("local", "ray")
IMAGE_SIZE_MIN = 8  # px; smaller inputs vanish in the backbones' stride-32 downsampling
DEFAULT_INIT_SEED = 0  # random-init weights when no init_seed is given
_CUDA_N = re.compile(r"^cuda:\d+$")
_RANDOM_INIT = "none"  # the weights part of a random-init spec: torchvision:resnet18:none


def _fail(name: str, must: str, got: Any) -> None:
    raise ValueError(f"The '{name}' parameter must be {must}. Got {got!r} instead.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ExtractConfig:
    """How ``extract_embeddings`` runs a backbone over the images (validated on construction).

    image_size: input px (None: the size the weights were trained at); resize: how non-square
    images become square (``RESIZE_MODES``); num_workers: decoding processes (None: picked for
    the cores and device); layer: None = penultimate, else a module name, average-pooled;
    init_seed: seed of random-init (``:none``) weights (None: ``DEFAULT_INIT_SEED``; refused for
    pretrained backbones, where it would do nothing); threads: 'auto' (follow the cores other
    processes leave free, re-checked as the run goes; ``linprobe.threads``) or a fixed count
    for the forward pass and decoding. ``precision`` takes fp32/bf16/fp16 too.
    """

    image_size: int | None = None
    resize: str = "crop"
    batch_size: int = 64
    device: str = "auto"
    precision: str = "auto"
    on_error: str = "fail"
    num_workers: int | None = None
    layer: str | None = None
    init_seed: int | None = None
    threads: int | str = "auto"

    def __post_init__(self) -> None:
        if self.image_size is not None and not (_is_int(self.image_size)
                                                and self.image_size >= IMAGE_SIZE_MIN):
            _fail("image_size", f"None or an int >= {IMAGE_SIZE_MIN}", self.image_size)
        if self.resize not in RESIZE_MODES:
            _fail("resize", f"one of {list(RESIZE_MODES)}", self.resize)
        if not _is_int(self.batch_size) or self.batch_size < 1:
            _fail("batch_size", "an int >= 1", self.batch_size)
        if not isinstance(self.device, str) or not (self.device in DEVICES
                                                    or _CUDA_N.match(self.device)):
            _fail("device", "'auto', 'cpu', 'cuda' or 'cuda:N'", self.device)
        if self.precision in PRECISION_ALIASES:
            object.__setattr__(self, "precision", PRECISION_ALIASES[self.precision])
        if self.precision not in PRECISIONS:
            _fail("precision", f"one of {list(PRECISIONS)}", self.precision)
        if self.on_error not in ON_ERROR:
            _fail("on_error", f"one of {list(ON_ERROR)}", self.on_error)
        if self.num_workers is not None and not (_is_int(self.num_workers)
                                                 and self.num_workers >= 0):
            _fail("num_workers", "None or an int >= 0", self.num_workers)
        if self.layer is not None and (not isinstance(self.layer, str) or not self.layer):
            _fail("layer", "None or a module name", self.layer)
        if self.init_seed is not None and not (_is_int(self.init_seed) and self.init_seed >= 0):
            _fail("init_seed", "None or an int >= 0", self.init_seed)
        object.__setattr__(self, "threads", parse_threads(self.threads, "threads"))


@dataclass(frozen=True)
class SplitConfig:
    """How samples the data assigns to no split are divided (seeded, stratified): ``val_fraction``
    and ``test_fraction`` of each class go to val and test, shuffled by ``split_seed``."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                _fail(name, "a float in the range [0, 1)", value)
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1 so that training data remains. "
                f"Got {self.val_fraction} + {self.test_fraction} instead."
            )
        if not _is_int(self.split_seed) or self.split_seed < 0:
            _fail("split_seed", "an int >= 0", self.split_seed)


def is_random_init(spec: str) -> bool:
    """Whether a backbone spec asks for random-init weights (``<family>:<model>:none``)."""
    family, _, rest = spec.partition(":")
    return family != "file" and ":" in rest and rest.rpartition(":")[2].lower() == _RANDOM_INIT


def check_init_seed(spec: str, init_seed: int | None) -> None:
    """Refuse an ``init_seed`` for a pretrained backbone: it would change nothing."""
    if init_seed is not None and not is_random_init(spec):
        raise ValueError(
            f"The 'init_seed' parameter seeds random-init weights only, and backbone {spec!r} is "
            f"pretrained. Got init_seed={init_seed!r}; leave it unset, or use a random-init spec "
            "such as 'torchvision:resnet18:none'."
        )


_RENAMED = {"seed": "'seed' was split in two: 'split_seed' (the train/val/test split) and "
                    "'init_seed' (random-init weights)"}


def with_options(config: ExtractConfig, split: SplitConfig,
                 options: dict[str, Any]) -> tuple[ExtractConfig, SplitConfig]:
    """``config`` and ``split`` with ``options`` (field names of either) replaced."""
    ex = {f.name for f in fields(ExtractConfig)}
    sp = {f.name for f in fields(SplitConfig)}
    unknown = sorted(set(options) - ex - sp)
    if unknown:
        hint = _RENAMED.get(unknown[0], f"options: {', '.join(sorted(ex | sp))}")
        raise TypeError(f"extract_embeddings() got an unexpected option {unknown[0]!r}; {hint}")
    return (replace(config, **{k: v for k, v in options.items() if k in ex}),
            replace(split, **{k: v for k, v in options.items() if k in sp}))
