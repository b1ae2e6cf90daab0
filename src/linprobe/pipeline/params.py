"""params.yaml -> validated dataclasses.

Only `linprobe.pipeline` reads params.yaml; library code takes plain arguments. Every error names
the file and the key path (``params.yaml: extract.batch_size must be ...``) and says how to fix it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from linprobe.cpus import parse_threads
from linprobe.finetune.config import FinetuneConfig
from linprobe.features.config import (
    DEVICES,
    ENGINES,
    IMAGE_SIZE_MIN,
    ON_ERROR,
    PRECISIONS,
    RESIZE_MODES,
    ExtractConfig,
    SplitConfig,
    is_random_init,
)

if TYPE_CHECKING:
    from linprobe.models.options import ProbeOptions

# Defaults and choices come from features.config (the library's own); the bounds below are only
# sanity limits for a params file.
_X, _S = ExtractConfig, SplitConfig
# Keys that were renamed: an old params.yaml gets the new name instead of "not a known setting".
_RENAMED = {
    "data.seed": "was renamed to data.split_seed (it seeds the train/val/test split; random-init "
                 "backbones take backbones.<name>.init_seed)",
}
# dvc.yaml interpolates these values into shell command lines (see its header), so each is
# either restricted to characters no shell interprets or single-quoted there:
# - backbone and probe names become file and DVC stage names (extract@<name>, train@<b>-<p>);
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")
NAME_RULE = "letters, digits, '_' and '.', starting with a letter or digit"
# - backbone specs (timm:hf-hub:org/model, file:models/net.pt, ...), passed unquoted;
_SPEC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/+-]*$")
SPEC_RULE = "letters, digits and _ . : / + -, starting with a letter or digit"
# - data.path is single-quoted in dvc.yaml: anything but a quote or a line break is literal.
_PATH_FORBIDDEN = ("'", "\n", "\r", "\0")


class ParamsError(ValueError):
    """A params.yaml value is missing or invalid."""


@dataclass(frozen=True)
class DataParams:
    path: str
    val_fraction: float = _S.val_fraction
    test_fraction: float = _S.test_fraction
    split_seed: int = _S.split_seed

    def split_config(self) -> SplitConfig:
        return SplitConfig(self.val_fraction, self.test_fraction, self.split_seed)


@dataclass(frozen=True)
class ExtractParams:
    """The ``extract`` section: the settings every backbone shares (see ExtractConfig)."""

    image_size: int | None = _X.image_size
    resize: str = _X.resize
    batch_size: int = _X.batch_size
    device: str = _X.device
    precision: str = _X.precision
    on_error: str = _X.on_error
    threads: int | str = _X.threads      # read by `linprobe extract --params` (not in dvc.yaml)
    engine: str = ENGINES[0]         # local (this process; torchrun ranks) | ray (one task/shard)
    ray_address: str | None = None   # ray engine: cluster address; None: RAY_ADDRESS, else local


@dataclass(frozen=True)
class BackboneParams:
    spec: str                            # e.g. lite:efficientnet-lite0, torchvision:resnet50:none
    layer: str | None = _X.layer         # None: penultimate; else a module, average-pooled
    init_seed: int | None = _X.init_seed  # random-init (:none) weights only


def extract_config(extract: ExtractParams, backbone: BackboneParams) -> ExtractConfig:
    """The library's config for one backbone: the shared ``extract`` section + its own entry."""
    return ExtractConfig(image_size=extract.image_size, resize=extract.resize,
                         batch_size=extract.batch_size, device=extract.device,
                         precision=extract.precision, on_error=extract.on_error,
                         threads=extract.threads, layer=backbone.layer, init_seed=backbone.init_seed)


@dataclass(frozen=True)
class ProbeEntry:
    """One probes.<name> entry: the registry probe it runs and that probe's options."""
    probe: str                     # registry name (logreg, knn, ...); defaults to the entry name
    options: ProbeOptions          # the probe's options dataclass (LogregOptions, KnnOptions, ...)


@dataclass(frozen=True)
class Params:
    data: DataParams
    extract: ExtractParams
    backbones: dict[str, BackboneParams]           # name -> spec (+ layer)
    probes: dict[str, ProbeEntry]                  # entry name -> probe + options
    seed: int = 0
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # backbones=(): off
    source: Path = field(default=Path("params.yaml"), compare=False)


class _Reader:
    """Typed access to one mapping of params.yaml with errors that name the key path."""

    def __init__(self, source: Path, node: Any, where: str):
        self.source, self.where = source, where
        if not isinstance(node, dict):
            self.fail(where or "the top level", f"must be a mapping, got {type(node).__name__} {node!r}")
        self.node = node

    def fail(self, key: str, message: str) -> None:
        raise ParamsError(f"{self.source}: {key} {message}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def reject_unknown(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.node) - allowed)
        for key in unknown:
            if self.key(key) in _RENAMED:
                self.fail(self.key(key), _RENAMED[self.key(key)])
        if unknown:
            self.fail(self.key(unknown[0]),
                      f"is not a known setting; allowed here: {', '.join(sorted(allowed))}")

    def get(self, name: str, kind: type | tuple, default: Any = ..., *,
            choices: tuple | None = None, low: float | None = None, high: float | None = None):
        if name not in self.node or (self.node[name] is None and default is None):
            if default is ...:
                self.fail(self.key(name), "is required")
            return default
        value = self.node[name]
        # bool is an int subclass in Python; `batch_size: true` is a mistake, not 1.
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(self.key(name), f"must be {_kind_name(kind)}, got {value!r}")
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            self.fail(self.key(name), f"must be {_kind_name(kind)}, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(self.key(name), f"must be one of {list(choices)}, got {value!r}")
        if low is not None and value < low or high is not None and value > high:
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            self.fail(self.key(name), f"must be {bounds}, got {value!r}")
        return value


def _threads(e: _Reader) -> int | str:
    """extract.threads: 'auto' or an int >= 1."""
    value = e.get("threads", (int, str), _X.threads)
    try:
        return parse_threads(value, "threads")
    except ValueError:
        e.fail(e.key("threads"), f"must be 'auto' or an integer >= 1, got {value!r}")


def _kind_name(kind: type | tuple) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_params(raw: Any, source: Path = Path("params.yaml")) -> Params:
    """Validate the parsed YAML of params.yaml and return :class:`Params`."""
    top = _Reader(source, raw, "")
    top.reject_unknown({"data", "extract", "backbones", "probes", "seed", "finetune"})

    d = _Reader(source, top.get("data", dict), "data")
    d.reject_unknown({"path", "val_fraction", "test_fraction", "split_seed"})
    data = DataParams(
        path=_data_path(d),
        val_fraction=d.get("val_fraction", float, _S.val_fraction, low=0.0, high=0.9),
        test_fraction=d.get("test_fraction", float, _S.test_fraction, low=0.0, high=0.9),
        split_seed=d.get("split_seed", int, _S.split_seed, low=0),
    )
    if data.val_fraction + data.test_fraction >= 1.0:
        d.fail("data.val_fraction + data.test_fraction", "must be < 1 to leave training data")

    e = _Reader(source, top.get("extract", dict, {}), "extract")
    e.reject_unknown({"image_size", "resize", "batch_size", "device", "precision", "on_error",
                      "threads", "engine", "ray_address"})
    extract = ExtractParams(
        image_size=e.get("image_size", int, _X.image_size, low=IMAGE_SIZE_MIN, high=4096),
        resize=e.get("resize", str, _X.resize, choices=RESIZE_MODES),
        batch_size=e.get("batch_size", int, _X.batch_size, low=1, high=65536),
        device=e.get("device", str, _X.device, choices=DEVICES),
        precision=e.get("precision", str, _X.precision, choices=PRECISIONS),
        on_error=e.get("on_error", str, _X.on_error, choices=ON_ERROR),
        threads=_threads(e),
        engine=e.get("engine", str, ENGINES[0], choices=ENGINES),
        ray_address=e.get("ray_address", str, None),
    )

    b = _Reader(source, top.get("backbones", dict), "backbones")
    if not b.node:
        b.fail("backbones", "is empty; add at least one, e.g. `lite0: {spec: lite:efficientnet-lite0}`")
    backbones = {}
    for name in b.node:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            b.fail(b.key(str(name)), f"is not a valid backbone name: use only {NAME_RULE} "
                                     "(it becomes a file name and part of a shell command)")
        entry = _Reader(source, b.node[name], b.key(name))
        entry.reject_unknown({"spec", "layer", "init_seed"})
        spec = entry.get("spec", str)
        if not _SPEC_RE.match(spec):
            entry.fail(entry.key("spec"), f"{spec!r} is not a safe backbone spec: use only "
                       f"{SPEC_RULE} (dvc.yaml passes it on a shell command line; rename or move "
                       "a file: model whose path has other characters)")
        init_seed = entry.get("init_seed", int, _X.init_seed, low=0)
        if init_seed is not None and not is_random_init(spec):
            entry.fail(entry.key("init_seed"), f"does nothing for the pretrained spec {spec!r}: it "
                       "seeds random-init weights only (specs ending in ':none'); remove it")
        backbones[name] = BackboneParams(spec=spec, layer=entry.get("layer", str, _X.layer),
                                         init_seed=init_seed)

    try:
        finetune = FinetuneConfig.from_params(top.node.get("finetune"), source=str(source),
                                              backbones=list(backbones))
    except ValueError as exc:
        raise ParamsError(str(exc)) from None
    return Params(data=data, extract=extract, backbones=backbones, probes=_probes(source, top),
                  seed=top.get("seed", int, 0), finetune=finetune, source=source)


def _probes(source: Path, top: _Reader) -> dict[str, ProbeEntry]:
    """probes: {<entry name>: {probe: <registry name>, ...options}}; every bad entry is listed."""
    # Imported here: linprobe.models loads scikit-learn, which `linprobe --help` must not wait for.
    from linprobe.models.probes import PROBES, probe_options

    p = _Reader(source, top.get("probes", dict), "probes")
    if not p.node:
        p.fail("probes", "is empty; add at least one, e.g. `logreg: {}`")
    probes, problems = {}, []
    for name in p.node:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            p.fail(p.key(str(name)), f"is not a valid probe name: use only {NAME_RULE}")
        options = dict(p.get(name, dict, None) or {})
        named = "probe" in options
        probe = options.pop("probe", name)
        try:
            if not isinstance(probe, str):
                raise ValueError(f"'probe' must be a probe name such as logreg, got {probe!r}")
            probes[name] = ProbeEntry(probe, probe_options(probe, options))
        except ValueError as exc:
            # An entry without `probe:` runs the probe of its own name: say how to name a variant.
            hint = ("" if named or probe in PROBES else
                    f" A variant of a probe names it: `{name}: {{probe: logreg, ...}}`.")
            problems.append(f"probes.{name}: {exc}{hint}")
    if len(problems) == 1:
        raise ParamsError(f"{source}: {problems[0]}")
    if problems:
        raise ParamsError(f"{source}: {len(problems)} probe entries to fix:\n  - "
                          + "\n  - ".join(problems))
    return probes


def _data_path(d: _Reader) -> str:
    """data.path: any path, except characters that would end dvc.yaml's single quotes."""
    path = d.get("path", str)
    bad = [c for c in _PATH_FORBIDDEN if c in path]
    if bad or not path or path.startswith("-"):
        d.fail(d.key("path"), f"{path!r} cannot be passed safely on dvc.yaml's command line "
               "(it must be non-empty, not start with '-', and hold no single quote or line "
               "break); rename the folder or use a path without those characters")
    return path


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file; copy the params.yaml from the linprobe "
                          f"repository and edit it")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); "
                          f"save params.yaml as UTF-8 YAML") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    return parse_params(raw, path)
