"""Fine-tuning reference settings: their defaults, choices and validation (no torch).

The one home of these facts: :func:`linprobe.finetune.train.finetune_backbone` takes a
:class:`FinetuneConfig`, and params.yaml's ``finetune:`` section is parsed by
:meth:`FinetuneConfig.from_params` (errors name ``params.yaml: finetune.<key>``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any

from linprobe.cpus import parse_threads

__all__ = ["ARMS", "OPTIMIZERS", "CLASS_WEIGHTS", "FinetuneConfig", "FinetuneConfigError"]

# The two reference arms: pretrained weights trained further, and the same architecture from a
# random init (what pretraining buys). Their names are the runs' "probe" names in the artifacts.
ARMS: tuple[str, ...] = ("finetune", "scratch")
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
CLASS_WEIGHTS: tuple[None | str, ...] = (None, "balanced")
UNFREEZE_ALL = "all"
# params.yaml's ``finetune.augment`` keys -> FinetuneConfig fields.
AUGMENT = {"random_resized_crop": "random_resized_crop", "scale": "crop_scale", "hflip": "hflip"}


class FinetuneConfigError(ValueError):
    """An invalid fine-tuning setting; ``param`` names it (for ``finetune.<param>`` messages)."""

    def __init__(self, param: str, message: str) -> None:
        self.param, self.detail = param, message
        super().__init__(f"The '{param}' parameter {message}")


def _fail(name: str, must: str, got: Any) -> None:
    raise FinetuneConfigError(name, f"must be {must}. Got {got!r} instead.")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class FinetuneConfig:
    """How the ``finetune`` and ``scratch`` reference arms are trained (validated on creation).

    backbones: names from params.yaml's ``backbones:`` to train (empty: the stage is off).
    arms: which of :data:`ARMS` to run. epochs: per learning rate; the epoch and the lr are
    chosen on val, test is scored once with that checkpoint. lrs: the learning-rate grid (peak
    lr after warm-up; cosine decay to 0 at the last epoch). unfreeze: ``"all"`` or the number
    of last backbone blocks trained (the head is always trained; ``scratch`` trains everything
    regardless). weight_decay: AdamW's decoupled decay / SGD's L2 (not on biases and norms).
    warmup_epochs: linear warm-up from lr/100, may be fractional. augment: random resized crop
    (area fraction ``crop_scale``) and horizontal flip on train only. class_weight:
    ``"balanced"`` weights the loss by n / (C * n_c). workers: decoding processes on CUDA
    (None: picked for the cores); CPU decodes on a thread pool in the main process. threads:
    ``"auto"`` (follow the free cores, re-read every second, as extraction does) or a count,
    for the training and scoring passes; not part of a run's identity (a checkpoint resumes
    under other threads), though on CPU another count can change the last bits of each step.
    """

    backbones: tuple[str, ...] = ()
    arms: tuple[str, ...] = ARMS
    epochs: int = 10
    lrs: tuple[float, ...] = (1e-4, 1e-3)
    batch_size: int = 32
    unfreeze: str | int = UNFREEZE_ALL
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    random_resized_crop: bool = True
    crop_scale: tuple[float, float] = (0.25, 1.0)
    hflip: bool = True
    class_weight: str | None = None
    label_smoothing: float = 0.0
    workers: int | None = None
    threads: int | str = "auto"

    def __post_init__(self) -> None:
        def tup(name: str) -> tuple:
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                _fail(name, "a list", value)
            object.__setattr__(self, name, tuple(value))
            return getattr(self, name)

        for b in tup("backbones"):
            if not isinstance(b, str) or not b:
                _fail("backbones", "a list of backbone names", self.backbones)
        arms = tup("arms")
        if not arms or any(a not in ARMS for a in arms) or len(set(arms)) != len(arms):
            _fail("arms", f"a non-empty list of distinct names from {list(ARMS)}", list(arms))
        if not _is_int(self.epochs) or self.epochs < 1:
            _fail("epochs", "an int >= 1", self.epochs)
        lrs = tup("lrs")
        if not lrs:
            _fail("lrs", "a non-empty list of learning rates (e.g. [1e-4, 1e-3])", list(lrs))
        if any(not _is_num(v) or v <= 0 for v in lrs) or len(set(lrs)) != len(lrs):
            _fail("lrs", "a list of distinct numbers > 0", list(lrs))
        object.__setattr__(self, "lrs", tuple(float(v) for v in lrs))
        if not _is_int(self.batch_size) or self.batch_size < 1:
            _fail("batch_size", "an int >= 1", self.batch_size)
        if self.unfreeze != UNFREEZE_ALL and not (_is_int(self.unfreeze) and self.unfreeze >= 0):
            _fail("unfreeze", "'all' or an int >= 0 (the number of last blocks trained; 0 "
                  "trains the head alone)", self.unfreeze)
        if self.optimizer not in OPTIMIZERS:
            _fail("optimizer", f"one of {list(OPTIMIZERS)}", self.optimizer)
        for name, hi in (("momentum", 1.0), ("label_smoothing", 1.0)):
            v = getattr(self, name)
            if not _is_num(v) or not 0 <= v < hi:
                _fail(name, f"a number in [0, {hi})", v)
        if not _is_num(self.weight_decay) or self.weight_decay < 0:
            _fail("weight_decay", "a number >= 0", self.weight_decay)
        if not _is_num(self.warmup_epochs) or not 0 <= self.warmup_epochs < self.epochs:
            _fail("warmup_epochs", f"a number in [0, epochs={self.epochs})", self.warmup_epochs)
        for name in ("random_resized_crop", "hflip"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, "true or false", getattr(self, name))
        scale = tup("crop_scale")
        if len(scale) != 2 or not all(_is_num(v) for v in scale) \
                or not 0 < scale[0] <= scale[1] <= 1:
            _fail("crop_scale", "[low, high] with 0 < low <= high <= 1 (area fractions)",
                  list(scale))
        object.__setattr__(self, "crop_scale", (float(scale[0]), float(scale[1])))
        if self.class_weight not in CLASS_WEIGHTS:
            _fail("class_weight", "null or 'balanced'", self.class_weight)
        if self.workers is not None and not (_is_int(self.workers) and self.workers >= 0):
            _fail("workers", "null or an int >= 0", self.workers)
        try:
            object.__setattr__(self, "threads", parse_threads(self.threads, warn=False))
        except ValueError:
            _fail("threads", "'auto' or an int >= 1 (threads per process)", self.threads)

    def unfreeze_blocks(self) -> int | None:
        """None: every block trains; else how many of the last blocks do."""
        return None if self.unfreeze == UNFREEZE_ALL else int(self.unfreeze)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (lists for tuples): the ``options`` of the runs' metrics."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self)}

    @classmethod
    def from_params(cls, node: Mapping[str, Any] | None, *, source: str = "params.yaml",
                    backbones: Collection[str] | None = None) -> "FinetuneConfig":
        """params.yaml's ``finetune:`` mapping (None or absent: off) -> config; the
        augmentation sits in ``augment: {random_resized_crop, scale, hflip}``. Errors read
        ``<source>: finetune.<key> must be ... Got ... instead.``; ``backbones`` (the names in
        ``backbones:``) are checked when given."""
        if node is None:
            return cls()
        if not isinstance(node, Mapping):
            raise ValueError(f"{source}: finetune must be a mapping, got {node!r}")
        node = dict(node)
        augment = node.pop("augment", None) or {}
        allowed = {f.name for f in fields(cls)} - set(AUGMENT.values()) | {"augment"}
        unknown = sorted(set(map(str, node)) - allowed)
        if unknown:
            raise ValueError(f"{source}: finetune.{unknown[0]} is not a known setting; allowed "
                             f"here: {', '.join(sorted(allowed))}")
        if not isinstance(augment, Mapping):
            raise ValueError(f"{source}: finetune.augment must be a mapping of {list(AUGMENT)}, "
                             f"got {augment!r}")
        for key in augment:
            if key not in AUGMENT:
                raise ValueError(f"{source}: finetune.augment.{key} is not a known setting; "
                                 f"allowed here: {', '.join(AUGMENT)}")
            node[AUGMENT[key]] = augment[key]
        try:
            config = cls(**dict(node))
        except FinetuneConfigError as exc:
            where = next((f"augment.{k}" for k, v in AUGMENT.items() if v == exc.param),
                         exc.param)
            raise ValueError(f"{source}: finetune.{where} {exc.detail}") from None
        if backbones is not None:
            missing = [b for b in config.backbones if b not in backbones]
            if missing:
                raise ValueError(f"{source}: finetune.backbones names {missing[0]!r}, which is "
                                 f"not in backbones: ({', '.join(backbones)}); add it there "
                                 "or use one of those names")
        return config
