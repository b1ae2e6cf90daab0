"""Crafted model files for ``file:`` backbones: malicious ones, each of which creates ``marker``
if any code from it runs, and garbage ones. Everything is made fresh by the tests from this code.

The payloads are live: ``test_model_files.py::test_payload_is_live`` opens each malicious file with
the loader its format was made for (pickle, torch.load(weights_only=False), torch.jit.load,
torch.export.load) and checks the marker appears, so "the marker was never created" means
something.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Tuple

import torch
from safetensors.torch import save_file
from torch import nn

from linprobe.features.backbones import Preprocess
from linprobe.features.backbones.torchvision_ import build_classifier

ARCH = "torchvision:squeezenet1_1:none"  # the smallest torchvision model (1.2 M parameters)
NUM_CLASSES = 5


class Touch:
    """Unpickling this object calls ``open(marker, 'w')``: the marker exists iff pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class ScriptPayload(nn.Module):
    """A TorchScript module that creates ``marker`` with ``torch.from_file(shared=True)`` when it
    is loaded (``__setstate__`` runs inside torch.jit.load) and on every forward."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.blob = torch.zeros(1, dtype=torch.uint8)  # kept, so the compiler keeps from_file

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blob = torch.from_file(self.marker, shared=True, size=1, dtype=torch.uint8)
        return x.mean(dim=(2, 3)) + blob.float().sum() * 0

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        self.blob = torch.from_file(self.marker, shared=True, size=1, dtype=torch.uint8)


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.mean(dim=(2, 3)))


def state_dict(num_classes: int = NUM_CLASSES) -> dict[str, torch.Tensor]:
    """A real state dict of ARCH with a ``num_classes``-way head (seeded)."""
    torch.manual_seed(0)
    return build_classifier("squeezenet1_1", None, num_classes=num_classes).state_dict()


def good_checkpoint(path: Path) -> Path:
    """A valid torch.save checkpoint with preprocessing for 32 px inputs."""
    pre = Preprocess(36, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear")
    torch.save({"arch": ARCH, "state_dict": state_dict(), "num_classes": NUM_CLASSES,
                "preprocess": pre.to_dict()}, path)
    return path


def good_safetensors(path: Path, **metadata: str) -> Path:
    """A valid safetensors file; ``metadata`` overrides/extends arch and num_classes."""
    meta = {"arch": ARCH, "num_classes": str(NUM_CLASSES), **metadata}
    save_file(state_dict(), str(path), metadata=meta)
    return path


# --- malicious files: each creates ``marker`` if its code runs --------------------------------


def pickle_checkpoint(path: Path, marker: Path) -> Path:
    """torch.save of a checkpoint dict with a code-running object inside."""
    torch.save({"arch": ARCH, "state_dict": state_dict(), "payload": Touch(marker)}, path)
    return path


def legacy_pickle_checkpoint(path: Path, marker: Path) -> Path:
    """The same in torch's legacy (non-zip) format."""
    torch.save({"arch": ARCH, "state_dict": {"w": torch.zeros(1)}, "payload": Touch(marker)}, path,
               _use_new_zipfile_serialization=False)
    return path


def raw_pickle(path: Path, marker: Path, protocol: int = 2) -> Path:
    """A plain ``pickle.dump`` of a code-running object."""
    with open(path, "wb") as f:
        pickle.dump({"arch": ARCH, "payload": Touch(marker)}, f, protocol=protocol)
    return path


def torchscript(path: Path, marker: Path) -> Path:
    """A TorchScript archive whose load and forward create ``marker``."""
    torch.jit.save(torch.jit.script(ScriptPayload(str(marker))), str(path))
    return path


def exported_program(path: Path, marker: Path) -> Path:
    """A torch.export archive whose weight ``lin.bias`` is a pickle that creates ``marker``:
    torch.export.load reads pickled weights with torch.load(weights_only=False)."""
    plain = path.with_suffix(".plain.pt2")
    torch.export.save(torch.export.export(_Small(), (torch.randn(2, 3, 4, 4),)), str(plain))
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data/weights/model_weights_config.json"):
                config = json.loads(data)
                config["config"]["lin.bias"]["use_pickle"] = True
                data = json.dumps(config).encode()
            elif info.filename.endswith("data/weights/weight_1"):  # lin.bias
                buffer = io.BytesIO()
                pickle.dump(Touch(marker), buffer, protocol=2)
                data = buffer.getvalue()
            dst.writestr(info.filename, data)
    plain.unlink()
    return path


def safetensors_arch(path: Path, arch: str) -> Path:
    """A safetensors file whose metadata 'arch' is ``arch`` (e.g. 'file:evil.pt', shell text)."""
    return good_safetensors(path, arch=arch)


# --- garbage ----------------------------------------------------------------------------------


def truncated(path: Path, source: Path, keep: float = 0.5) -> Path:
    """The first ``keep`` share of ``source``'s bytes."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def random_bytes(path: Path, size: int = 4096) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def foreign_zip(path: Path) -> Path:
    """A valid zip archive that is not a torch archive."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a model")
        archive.writestr("weights.bin", b"\0" * 64)
    return path
