"""``file:<path>``: weights for a torchvision architecture, read without running code from the file.

Accepted (the format is decided from the bytes, before anything is loaded):

- a ``torch.save`` checkpoint (zip or legacy pickle) ``{"arch": "torchvision:<model>[:none]",
  "state_dict": {...}, "num_classes"?: int, "preprocess"?: Preprocess dict}``, read with
  ``torch.load(weights_only=True)``, whose restricted unpickler builds only tensors and plain
  containers;
- a safetensors file (the state dict) whose string metadata holds ``arch``, optionally
  ``num_classes`` (decimal) and ``preprocess`` (JSON).

Refused: TorchScript archives (their code runs at load and at every forward, with any op, e.g.
``torch.from_file(..., shared=True)`` creates files) and ``torch.export`` archives
(``torch.export.load`` unpickles weights with ``weights_only=False``). Everything read is checked
before use; each refusal names the file, the reason and how to convert the model.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from linprobe.features.backbones import torchvision_
from linprobe.features.backbones.preprocess import Preprocess
from linprobe.features.backbones.torchvision_ import unpickle_reason
from linprobe.features.backbones.types import LoadedNet, UnknownBackboneError

HOW_TO_CONVERT = (
    "Convert it in an environment that trusts the model: torch.save({'arch': "
    "'torchvision:resnet18:none', 'state_dict': model.state_dict()}, 'model.pth'), or "
    "safetensors.torch.save_file(model.state_dict(), 'model.safetensors', "
    "metadata={'arch': 'torchvision:resnet18:none'}) (add 'num_classes' when the head is not "
    "1000-way, and 'preprocess' for non-ImageNet preprocessing)."
)
# A torchvision spec and nothing else: no 'file:' inside a file, no shell or path characters.
ARCH_PATTERN = re.compile(r"torchvision:[A-Za-z0-9_]+(:[A-Za-z0-9_]+)?")
MAX_NUM_CLASSES = 100_000  # ImageNet-21k has 21,843; a larger head is a memory bomb, not a model
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_PICKLE_PROTOCOLS = (2, 3, 4, 5)  # torch.save writes protocol 2 (legacy) or a zip


@dataclass(frozen=True)
class Checkpoint:
    """A model file's validated content: which architecture, and the weights for it."""

    path: str
    arch: str  # 'torchvision:<model>[:<weights>]' (the weights part is ignored)
    state_dict: dict[str, torch.Tensor]
    num_classes: int
    preprocess: Preprocess | None


def _refuse(path: str, what: str, why: str) -> ValueError:
    return ValueError(f"Backbone file {path!r} {what}: {why} {HOW_TO_CONVERT}")


def _zip_kind(path: str) -> str:
    """'checkpoint' for a torch.save zip; refuses TorchScript, torch.export and other zips."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise _refuse(path, "is a truncated or damaged zip archive", f"{err}; save it again.") from err
    # torch archives put every member under one top folder: '<name>/data.pkl'.
    inner = {name.split("/", 1)[-1] for name in names}
    if "constants.pkl" in inner or any(n.startswith("code/") for n in inner):
        raise _refuse(
            path, "is a TorchScript archive, which linprobe refuses to load",
            "TorchScript code runs when the file is loaded and on every forward, and can call any "
            "operator (e.g. write files), so it cannot be loaded safely.",
        )
    if "archive_format" in inner or any(n.startswith("models/") for n in inner):
        raise _refuse(
            path, "is a torch.export archive (.pt2), which linprobe refuses to load",
            "torch.export.load unpickles parts of it with weights_only=False, which can run "
            "any code.",
        )
    if "data.pkl" not in inner:
        shown = ", ".join(sorted(names)[:5]) or "no members"
        raise _refuse(path, "is a zip archive but not a torch.save checkpoint",
                      f"it holds {shown}; linprobe reads torch.save checkpoints and safetensors files.")
    return "checkpoint"


def _is_safetensors(head: bytes, size: int) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header starting with '{'."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(size - 8, _SAFETENSORS_MAX_HEADER) and head[8:9] == b"{"


def _describe(head: bytes) -> str:
    """A few words on what an unrecognised file looks like, for the error message."""
    if not head:
        return "is empty (0 bytes)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"is not a model file linprobe knows (it starts with bytes {head[:8].hex(' ')})"
    return f"is a text file, not a model file (it starts with {text[:40]!r})"


def detect_format(path: str) -> str:
    """'checkpoint' (torch.save zip or pickle) or 'safetensors', from the file's bytes alone.

    Raises ValueError for every other format (TorchScript, torch.export, unknown).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(64)
    # Safetensors first: its strict header cannot start with 'PK', while a zip signature
    # (zipfile.is_zipfile looks near the end) can occur inside tensor data.
    if _is_safetensors(head, size):
        return "safetensors"
    if head.startswith(b"PK"):  # torch.load also decides 'zip' from the first bytes
        return _zip_kind(path)
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return "checkpoint"  # a legacy torch.save file; torch.load(weights_only=True) reads it
    raise _refuse(path, _describe(head), "linprobe reads torch.save checkpoints and safetensors files.")


def _read_torch(path: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a hostile or damaged pickle can fail in any way: all mean "unreadable"
        raise _refuse(
            path, "could not be read with torch.load(weights_only=True)",
            f"it is damaged, or holds Python objects other than tensors and plain containers, "
            f"which linprobe refuses to load ({unpickle_reason(err)}).",
        ) from err


def _read_safetensors(path: str) -> dict[str, Any]:
    """The checkpoint dict of a safetensors file: its tensors plus its metadata's fields."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # the library's errors (SafetensorError, OSError, ...) all mean damaged
        raise _refuse(path, "is a damaged safetensors file", f"{err}; save it again.") from err
    ckpt: dict[str, Any] = {"state_dict": tensors}
    if "arch" in meta:
        ckpt["arch"] = meta["arch"]
    if "num_classes" in meta:
        text = meta["num_classes"]
        ckpt["num_classes"] = int(text) if text.isdigit() else text
    if "preprocess" in meta:
        try:
            ckpt["preprocess"] = json.loads(meta["preprocess"])
        except json.JSONDecodeError as err:
            raise ValueError(
                f"Backbone file {path!r}: metadata 'preprocess' must be a JSON object with "
                f"resize, crop, mean, std, interpolation. Got invalid JSON ({err})."
            ) from err
    return ckpt


def _check_arch(path: str, arch: Any) -> str:
    if isinstance(arch, str) and arch.startswith("file:"):
        raise ValueError(
            f"Backbone file {path!r}: 'arch' must name a built-in architecture, not another file. "
            f"Got {arch[:200]!r}. Use e.g. 'torchvision:resnet18:none'."
        )
    if not isinstance(arch, str) or not ARCH_PATTERN.fullmatch(arch):
        raise ValueError(
            f"Backbone file {path!r}: 'arch' must be a torchvision spec such as "
            f"'torchvision:resnet18:none' (letters, digits, '_'). Got {str(arch)[:200]!r} instead."
        )
    return arch


def _check_state_dict(path: str, state: Any) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping) or not state:
        raise ValueError(
            f"Backbone file {path!r}: 'state_dict' must be a non-empty dict of tensors "
            f"(model.state_dict()). Got {type(state).__name__} instead."
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"Backbone file {path!r}: 'state_dict' entry {str(key)[:100]!r} must be a tensor "
                f"under a str key. Got {type(value).__name__} instead."
            )
        if value.layout != torch.strided or value.device.type != "cpu":
            raise ValueError(
                f"Backbone file {path!r}: 'state_dict' entry {key!r} must be a dense CPU tensor. "
                f"Got layout {value.layout}, device {value.device.type}."
            )
    return dict(state)


def _check_num_classes(path: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NUM_CLASSES:
        raise ValueError(
            f"Backbone file {path!r}: 'num_classes' must be an int from 1 to {MAX_NUM_CLASSES} "
            f"(the size of the model's final layer). Got {str(value)[:100]!r} instead."
        )
    return value


def _check_preprocess(path: str, value: Any) -> Preprocess:
    try:
        if not isinstance(value, Mapping):
            raise TypeError(f"got {type(value).__name__}")
        return Preprocess.from_dict(dict(value))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"Backbone file {path!r}: 'preprocess' must be a dict with resize, crop, mean, std, "
            f"interpolation (Preprocess.to_dict()). It is not: {err}."
        ) from err


def validate(path: str, ckpt: Any) -> Checkpoint:
    """Every field the registry uses, checked; errors name the file and the key."""
    if not isinstance(ckpt, Mapping):
        raise ValueError(
            f"Backbone file {path!r} must hold a dict with 'arch' and 'state_dict'. Got a "
            f"{type(ckpt).__name__} instead. {HOW_TO_CONVERT}"
        )
    missing = [key for key in ("arch", "state_dict") if key not in ckpt]
    if missing:
        keys = sorted(str(k) for k in ckpt)[:10]
        raise ValueError(
            f"Backbone file {path!r} must be a dict with 'arch' (a spec such as "
            f"'torchvision:resnet18:none') and 'state_dict'; missing {missing}. Got keys {keys}. "
            f"{HOW_TO_CONVERT}"
        )
    return Checkpoint(
        path=path,
        arch=_check_arch(path, ckpt["arch"]),
        state_dict=_check_state_dict(path, ckpt["state_dict"]),
        num_classes=_check_num_classes(path, ckpt.get("num_classes", 1000)),
        preprocess=_check_preprocess(path, ckpt["preprocess"]) if "preprocess" in ckpt else None,
    )


def load_file(path: str) -> Checkpoint:
    """The validated checkpoint in ``path``; nothing from the file is run (:func:`load` builds it)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Backbone file not found: {path!r} (from spec 'file:{path}'). Give the path of a "
            "checkpoint saved with torch.save or of a safetensors file."
        )
    if detect_format(path) == "safetensors":
        return validate(path, _read_safetensors(path))
    return validate(path, _read_torch(path))


def check(path: str, weights: None = None) -> None:
    """Read and check ``path`` as :func:`load` would, without building the model."""
    load_file(path)


def load(path: str, weights: None = None, *, image_size: int | None = None, offline: bool = True) -> LoadedNet:
    """``file:<path>``: its torchvision ``arch`` (random init) with its state dict loaded strictly.

    ``weights`` is always None (the spec's path keeps any ':'); ``offline`` does not apply.
    """
    ckpt = load_file(path)
    arch = ckpt.arch.split(":")[1]  # validate() checked 'torchvision:<model>[:<weights>]'
    try:
        loaded = torchvision_.load_torchvision(
            arch, torchvision_.NO_WEIGHTS, image_size=image_size, num_classes=ckpt.num_classes
        )
    except UnknownBackboneError as err:
        raise UnknownBackboneError(f"Backbone file {ckpt.path!r}: 'arch': {err}") from err
    try:
        loaded.net.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"Backbone file {ckpt.path!r}: 'state_dict' does not fit 'arch' {ckpt.arch!r} with "
            f"{ckpt.num_classes} classes (set 'num_classes' if the head differs): {err}"
        ) from err
    if ckpt.preprocess is not None:
        loaded.preprocess = ckpt.preprocess.with_image_size(image_size)
    loaded.spec = f"file:{os.path.abspath(ckpt.path)}"
    loaded.weights = os.path.basename(ckpt.path)
    return loaded
