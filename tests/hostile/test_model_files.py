"""Issue 9 item 2 (and the item-10 "garbage model file"): ``file:`` backbones never run code.

Every malicious file carries a payload that creates a marker file if any code from it runs
(``test_payload_is_live`` proves each payload works with its format's own loader). Each case runs
the real ``linprobe extract`` and asserts: exit 2, one ``linprobe: error:`` line naming the file,
the reason and the fix, no traceback, nothing under the data or model folders changed, no marker,
no output.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import warnings
from pathlib import Path

import h5py
import pytest
import torch

from linprobe.features.backbones import Preprocess, load_backbone
from tests.hostile import model_files as mf
from tests.hostile.harness import expect_error, expect_ok

CONVERT = r"torch\.save\(\{'arch': 'torchvision:resnet18:none', 'state_dict'.*safetensors"
UNPICKLE = r"could not be read with torch\.load\(weights_only=True\)"


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "MARKER"


def extract_refused(model: Path, folder: Path, match: list[str], marker: Path,
                    env: dict[str, str] | None = None) -> None:
    """``linprobe extract --backbone file:<model>`` fails cleanly, naming the file; no code ran."""
    out = folder.parent / "emb.h5"
    expect_error(["extract", "--backbone", f"file:{model}", "--data", folder, "--out", out,
                  "--image-size", "32", "--workers", "0"],
                 [f"Backbone file '{model}'", *match], watch=[folder, model.parent], env=env)
    assert not marker.exists(), "code from the model file ran"
    assert not out.exists() and not Path(f"{out}.partial").exists()


# --- the payloads work: loading with the format's own loader runs them ------------------------

LOADERS = {
    "torch.save": (mf.pickle_checkpoint, lambda p: torch.load(p, weights_only=False)),
    "legacy torch.save": (mf.legacy_pickle_checkpoint, lambda p: torch.load(p, weights_only=False)),
    "pickle.dump": (mf.raw_pickle, lambda p: pickle.loads(Path(p).read_bytes())),
    "torch.jit": (mf.torchscript, torch.jit.load),
    "torch.export": (mf.exported_program, torch.export.load),
}


@pytest.mark.parametrize("fmt", LOADERS)
def test_payload_is_live(fmt, models, marker):
    make, unsafe_load = LOADERS[fmt]
    path = make(models / "evil.pt2", marker)  # .pt2: torch.export.load requires that suffix
    assert not marker.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            unsafe_load(str(path))
        except RuntimeError:
            pass  # torch.export.load fails after the payload ran (the "weight" is no tensor)
    assert marker.exists(), f"the {fmt} payload did not run: the refusal tests would prove nothing"


def test_torchscript_payload_also_runs_on_forward(models, marker):
    net = torch.jit.load(str(mf.torchscript(models / "evil.pt", marker)))
    marker.unlink()
    net(torch.zeros(1, 3, 4, 4))
    assert marker.exists()


# --- malicious files: refused before anything runs --------------------------------------------


@pytest.mark.parametrize("make", [mf.pickle_checkpoint, mf.legacy_pickle_checkpoint, mf.raw_pickle],
                         ids=["torch.save", "legacy", "pickle.dump"])
def test_pickle_payload_is_refused(make, folder, models, marker):
    path = make(models / "evil.pth", marker)
    extract_refused(path, folder, [UNPICKLE, r"Unsupported global: GLOBAL io\.open", CONVERT], marker)


def test_pickle_protocol_5_payload_is_refused(folder, models, marker):
    path = mf.raw_pickle(models / "evil.pkl", marker, protocol=5)
    extract_refused(path, folder, [UNPICKLE, "Unsupported operand"], marker)


def test_pickle_payload_is_refused_even_if_torch_is_told_to_trust_files(folder, models, marker):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 only changes torch.load calls that leave weights_only unset."""
    path = mf.pickle_checkpoint(models / "evil.pth", marker)
    extract_refused(path, folder, [UNPICKLE], marker, env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})


@pytest.mark.parametrize("name", ["evil.pt", "evil.pth"])  # the format is read from the bytes
def test_torchscript_is_refused(name, folder, models, marker):
    path = mf.torchscript(models / name, marker)
    extract_refused(path, folder, ["is a TorchScript archive", "code runs when the file is loaded",
                                   CONVERT], marker)


def test_exported_program_is_refused(folder, models, marker):
    path = mf.exported_program(models / "evil.pt2", marker)
    extract_refused(path, folder, [r"torch\.export archive", "weights_only=False", CONVERT], marker)


def test_safetensors_arch_pointing_to_a_file_is_refused(folder, models, marker):
    evil = mf.torchscript(models / "evil.pt", marker)
    path = mf.safetensors_arch(models / "m.safetensors", f"file:{evil}")
    extract_refused(path, folder, ["'arch' must name a built-in architecture, not another file"],
                    marker)


def test_safetensors_arch_with_shell_text_is_refused(folder, models, marker):
    path = mf.safetensors_arch(models / "m.safetensors", f"torchvision:squeezenet1_1; touch {marker}")
    extract_refused(path, folder, ["'arch' must be a torchvision spec", "touch"], marker)


# --- garbage files: one clean error line each -------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


GARBAGE = {  # each through the real CLI
    "zero bytes": (lambda d: write(d / "m.pth", b""), ["is empty"]),
    "random bytes": (lambda d: write(d / "m.pth", random.Random(0).randbytes(4096)),
                     ["not a model file linprobe knows", "starts with bytes cd 07"]),
    "text": (lambda d: write(d / "m.pth", b"resnet18 weights: see the wiki\n"),
             ["is a text file", "resnet18 weights"]),
    "foreign zip": (lambda d: mf.foreign_zip(d / "m.zip"),
                    ["zip archive but not a torch.save checkpoint", "readme.txt"]),
    "truncated checkpoint": (lambda d: mf.truncated(d / "m.pth", mf.good_checkpoint(d / "full.pth")),
                             ["truncated or damaged zip"]),
    "truncated safetensors": (
        lambda d: mf.truncated(d / "m.safetensors", mf.good_safetensors(d / "full.safetensors")),
        ["damaged safetensors file"]),
    "missing keys": (lambda d: _save(d, {"weights": torch.zeros(2)}),
                     [r"missing \['arch', 'state_dict'\]", "weights"]),
    "state_dict of another arch": (lambda d: _save(d, {"arch": "torchvision:resnet18:none",
                                                       "state_dict": mf.state_dict()}),
                                   ["'state_dict' does not fit 'arch' 'torchvision:resnet18:none'",
                                    "Missing key"]),
}

FIELDS = {  # every field read from a checkpoint is checked; in-process (the CLI maps ValueError)
    "not a dict": ([torch.zeros(2)], ["must hold a dict", "list"]),
    "arch not a str": ({"arch": 42, "state_dict": "SD"}, ["'arch' must be a torchvision spec", "42"]),
    "arch of another family": ({"arch": "lite:efficientnet-lite0", "state_dict": "SD"},
                               ["'arch' must be a torchvision spec", "lite:"]),
    "unknown arch": ({"arch": "torchvision:resnet99", "state_dict": "SD"}, ["'arch'", "resnet99"]),
    "state_dict a list": ({"arch": mf.ARCH, "state_dict": [torch.zeros(2)]},
                          ["'state_dict' must be a non-empty dict of tensors", "list"]),
    "state_dict of ints": ({"arch": mf.ARCH, "state_dict": {"w": 3}},
                           ["'state_dict' entry 'w' must be a tensor", "int"]),
    "state_dict sparse": ({"arch": mf.ARCH, "state_dict": {"w": torch.eye(2).to_sparse()}},
                          ["'state_dict' entry 'w' must be a dense CPU tensor"]),
    "num_classes a str": ({"arch": mf.ARCH, "state_dict": "SD", "num_classes": "5"},
                          ["'num_classes' must be an int", "'5'"]),
    "num_classes huge": ({"arch": mf.ARCH, "state_dict": "SD", "num_classes": 10**12},
                         ["'num_classes' must be an int from 1 to 100000"]),
    "preprocess incomplete": ({"arch": mf.ARCH, "state_dict": "SD", "num_classes": 5,
                               "preprocess": {"resize": 36}},
                              ["'preprocess' must be a dict with resize, crop", "'crop'"]),
    "preprocess wrong type": ({"arch": mf.ARCH, "state_dict": "SD", "num_classes": 5,
                               "preprocess": {"resize": 36, "crop": 32, "mean": 1, "std": 1,
                                              "interpolation": "bilinear"}},
                              ["'preprocess' must be a dict"]),
    "num_classes left out": ({"arch": mf.ARCH, "state_dict": "SD"},
                             ["does not fit", "1000 classes", "set 'num_classes'"]),
}


def _save(models: Path, obj) -> Path:
    torch.save(obj, models / "m.pth")
    return models / "m.pth"


@pytest.mark.parametrize("case", GARBAGE)
def test_garbage_model_file_is_a_clean_error(case, folder, models, marker):
    make, match = GARBAGE[case]
    extract_refused(make(models), folder, match, marker)


@pytest.mark.parametrize("case", FIELDS)
def test_checkpoint_field_is_checked(case, models):
    content, match = FIELDS[case]
    if isinstance(content, dict) and content["state_dict"] == "SD":
        content = {**content, "state_dict": mf.state_dict()}
    path = _save(models, content)
    with pytest.raises(ValueError) as err:
        load_backbone(f"file:{path}")
    for pattern in [f"Backbone file '{path}'", *match]:
        assert re.search(pattern, str(err.value)), f"{pattern!r} not in {err.value}"


@pytest.mark.parametrize("metadata, match", [
    ({}, r"missing \['arch'\]"),
    ({"arch": mf.ARCH, "num_classes": "5", "preprocess": "{resize"},
     "metadata 'preprocess' must be a JSON object"),
    ({"arch": mf.ARCH, "num_classes": "five"}, "'num_classes' must be an int"),
], ids=["no arch", "preprocess not JSON", "num_classes not a number"])
def test_safetensors_metadata_is_checked(metadata, match, models):
    from safetensors.torch import save_file

    path = models / "m.safetensors"
    save_file(mf.state_dict(), str(path), metadata=metadata)
    with pytest.raises(ValueError, match=match):
        load_backbone(f"file:{path}")


# --- a safe model file still works end to end --------------------------------------------------


@pytest.mark.parametrize("fmt", ["torch.save", "safetensors"])
def test_safe_model_file_extracts(fmt, folder, models):
    pre = Preprocess(36, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear")
    path = (mf.good_checkpoint(models / "ok.pth") if fmt == "torch.save" else
            mf.good_safetensors(models / "ok.safetensors", preprocess=json.dumps(pre.to_dict())))
    out = folder.parent / "emb.h5"
    r = expect_ok(["extract", "--backbone", f"file:{path}", "--data", folder, "--out", out,
                   "--workers", "0"], watch=[folder, models])
    assert "embeddings written" in r.out and out.is_file()
    with h5py.File(out, "r") as f:
        assert f.attrs["weights"] == path.name
        assert f.attrs["image_size"] == 32  # the file's own preprocessing was used



def test_cached_torchvision_weights_with_payload_are_refused(folder, tmp_path, marker):
    """torchvision reads its cached weights with torch.hub's torch.load(weights_only=False); a file
    put there by hand (as the offline message suggests) must not run code either."""
    from linprobe.features.backbones.torchvision_ import resolve_weights, weights_file

    env = {"TORCH_HOME": str(tmp_path / "torch")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", env["TORCH_HOME"])
        path = Path(weights_file(resolve_weights("squeezenet1_1", None)))
    path.parent.mkdir(parents=True)
    mf.pickle_checkpoint(path, marker)
    out = folder.parent / "emb.h5"
    expect_error(["extract", "--backbone", "torchvision:squeezenet1_1", "--data", folder, "--out", out,
                  "--image-size", "32", "--workers", "0"],
                 [f"Weights file '{path}'", UNPICKLE, r"io\.open", "download"], watch=[folder, path], env=env)
    assert not marker.exists(), "code from the cached weights file ran"


def test_format_is_read_from_the_header_not_from_zip_bytes_inside_tensors(models):
    """A safetensors file whose last tensor ends with a zip end-of-archive record is still
    safetensors (zipfile.is_zipfile would call it a zip)."""
    import zipfile

    from safetensors.torch import save_file

    from linprobe.features.backbones.file_ import detect_format

    eocd = torch.tensor(list(b"PK\x05\x06" + bytes(18)), dtype=torch.uint8)
    path = models / "m.safetensors"
    save_file({"w": torch.zeros(4), "zzz": eocd}, str(path), metadata={"arch": mf.ARCH})
    assert zipfile.is_zipfile(path)
    assert detect_format(str(path)) == "safetensors"
