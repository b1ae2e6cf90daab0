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

from linprobe.features.croploss import RESIZE_MODES

if TYPE_CHECKING:
    from linprobe.models.options import ProbeOptions

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
ON_ERROR = ("fail", "skip")
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
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class ExtractParams:
    image_size: int | None = None  # None: the size the weights were trained at
    resize: str = "crop"           # crop | pad | stretch: how non-square images become square
    batch_size: int = 64
    device: str = "auto"
    precision: str = "auto"
    on_error: str = "fail"


@dataclass(frozen=True)
class BackboneParams:
    spec: str                      # e.g. lite:efficientnet-lite0, torchvision:resnet50:none
    layer: str | None = None       # None: penultimate; else a named module, global-average-pooled


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
            self.fail(self.key(name), f"must be in [{low}, {high}], got {value!r}")
        return value


def _kind_name(kind: type | tuple) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_params(raw: Any, source: Path = Path("params.yaml")) -> Params:
    """Validate the parsed YAML of params.yaml and return :class:`Params`."""
    top = _Reader(source, raw, "")
    top.reject_unknown({"data", "extract", "backbones", "probes", "seed"})

    d = _Reader(source, top.get("data", dict), "data")
    d.reject_unknown({"path", "val_fraction", "test_fraction", "seed"})
    data = DataParams(
        path=_data_path(d),
        val_fraction=d.get("val_fraction", float, 0.1, low=0.0, high=0.9),
        test_fraction=d.get("test_fraction", float, 0.2, low=0.0, high=0.9),
        seed=d.get("seed", int, 0),
    )
    if data.val_fraction + data.test_fraction >= 1.0:
        d.fail("data.val_fraction + data.test_fraction", "must be < 1 to leave training data")

    e = _Reader(source, top.get("extract", dict, {}), "extract")
    e.reject_unknown({"image_size", "resize", "batch_size", "device", "precision", "on_error"})
    extract = ExtractParams(
        image_size=e.get("image_size", int, None, low=8, high=4096),
        resize=e.get("resize", str, "crop", choices=RESIZE_MODES),
        batch_size=e.get("batch_size", int, 64, low=1, high=65536),
        device=e.get("device", str, "auto", choices=DEVICES),
        precision=e.get("precision", str, "auto", choices=PRECISIONS),
        on_error=e.get("on_error", str, "fail", choices=ON_ERROR),
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
        entry.reject_unknown({"spec", "layer"})
        spec = entry.get("spec", str)
        if not _SPEC_RE.match(spec):
            entry.fail(entry.key("spec"), f"{spec!r} is not a safe backbone spec: use only "
                       f"{SPEC_RULE} (dvc.yaml passes it on a shell command line; rename or move "
                       "a file: model whose path has other characters)")
        backbones[name] = BackboneParams(spec=spec, layer=entry.get("layer", str, None))

    return Params(data=data, extract=extract, backbones=backbones, probes=_probes(source, top),
                  seed=top.get("seed", int, 0), source=source)


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
