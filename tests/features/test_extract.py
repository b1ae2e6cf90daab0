"""The extraction engine with real backbones on real images: output contract, equality with a
plain forward pass, bad images, resume after SIGKILL / Ctrl-C, discarding foreign partial files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from PIL import Image

from linprobe.features.datasets import load_dataset
from linprobe.features.extract import extract_embeddings, seeded_backbone
from linprobe.features import forward
from linprobe.features.forward import forward_rows, peak_activation_bytes, prepare_model
from linprobe.features.images import ImageDecodeError
from linprobe.features.store import read_embeddings
from tests.features.imagedata import write_folder

R18 = "torchvision:resnet18:none"
CONTRACT_ATTRS = {
    "backbone", "weights", "preprocess", "image_size", "embed_dim", "num_params", "class_names",
    "task", "dataset_fingerprint", "data_root", "layer", "versions", "device", "precision",
    "seconds", "images_per_s", "skipped", "created",
}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("fm"), per_class=6, classes=3)


def _reference(spec: str, root: Path, ids: list[str], image_size: int) -> np.ndarray:
    """(n, D) embeddings by a plain torchvision-v2 transform + forward loop, for comparison."""
    bb = seeded_backbone(spec, image_size=image_size, layer=None, init_seed=None)
    p = bb.preprocess
    tf = v2.Compose([v2.PILToTensor(), v2.Resize(p.resize, antialias=True), v2.CenterCrop(p.crop),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(p.mean, p.std)])
    x = torch.stack([tf(Image.open(root / i).convert("RGB")) for i in ids])
    with torch.no_grad():
        return bb.model.eval()(x).numpy()


def test_resnet18_file_contract_and_values(folder, tmp_path):
    out = extract_embeddings(R18, folder, tmp_path / "r18.h5", image_size=32, batch_size=8,
                             num_workers=0, progress=False)
    assert out == tmp_path / "r18.h5" and not (tmp_path / "r18.h5.partial").exists()
    es = read_embeddings(out)
    ds = load_dataset(folder)
    assert es.embeddings.shape == (18, 512) and es.embeddings.dtype == np.float32
    assert es.ids.tolist() == ds.ids and np.array_equal(es.labels, ds.labels)
    assert np.array_equal(es.split, ds.split)
    assert CONTRACT_ATTRS <= set(es.attrs)
    a = es.attrs
    assert a["backbone"] == R18 and a["image_size"] == 32 and a["embed_dim"] == 512
    assert a["dataset_fingerprint"] == ds.fingerprint() and a["data_root"] == str(folder.resolve())
    assert (out.parent / a["data_root_relative"]).resolve() == folder.resolve()
    assert a["preprocess"]["crop"] == 32 and a["precision"] == "float32" and a["skipped"] == []
    assert a["device"].startswith("cpu") and a["images_per_s"] > 0 and a["versions"]["torch"]
    with h5py.File(out) as f:
        assert f["embeddings"].chunks[0] == 8  # one chunk per batch
    ref = _reference(R18, folder, ds.ids[:5], 32)
    np.testing.assert_allclose(es.embeddings[:5], ref, rtol=1e-4, atol=1e-4)


def test_cpu_slices_fit_the_activation_budget(monkeypatch):
    """resnet18's largest activation is the stem's (64, s/2, s/2) float32 map; the slice holds
    as many images as fit the budget, on CUDA the whole batch."""
    model = prepare_model(seeded_backbone(R18, image_size=64, layer=None, init_seed=0).model,
                          torch.device("cpu"), 64)
    per_image = 64 * 32 * 32 * 4
    assert peak_activation_bytes(model, 64, torch.device("cpu")) == per_image
    monkeypatch.setattr(forward, "CPU_SLICE_BYTES", 5 * per_image + 1)
    assert forward_rows(model, torch.device("cpu"), 64, 18) == 5
    assert forward_rows(model, torch.device("cpu"), 64, 3) == 3
    monkeypatch.setattr(forward, "CPU_SLICE_BYTES", 1)
    assert forward_rows(model, torch.device("cpu"), 64, 18) == 1
    assert forward_rows(model, torch.device("cuda"), 64, 18) == 18


def test_batch_sliced_for_the_cpu_forward_and_decoded_on_threads(folder, tmp_path, monkeypatch):
    """One batch of 18 runs as CPU forward slices (8 + 8 + 2: the budget is set so), decoded on
    the in-process thread pool; every row still equals the plain per-image reference."""
    monkeypatch.setattr(forward, "CPU_SLICE_BYTES", 8 * 64 * 16 * 16 * 4)  # stem map at 32 px
    stem_rows = []  # images per call of the stem conv (the only module fed 3-channel input)

    def record(module, args):
        if next(module.children(), None) is not None:
            return
        if args and isinstance(args[0], torch.Tensor) and args[0].ndim == 4:
            if args[0].shape[1] == 3:
                stem_rows.append(args[0].shape[0])

    threads = torch.get_num_threads()
    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        out = extract_embeddings(R18, folder, tmp_path / "r18.h5", image_size=32, batch_size=18,
                                 num_workers=0, progress=False)
    finally:
        handle.remove()
    assert stem_rows[-3:] == [8, 8, 2]
    assert torch.get_num_threads() == threads  # the single-threaded decode pool left no trace
    es = read_embeddings(out)
    ref = _reference(R18, folder, es.ids.tolist(), 32)
    np.testing.assert_allclose(es.embeddings, ref, rtol=1e-4, atol=1e-4)


def test_lite0_with_workers(folder, tmp_path):
    out = extract_embeddings("lite:efficientnet-lite0", folder, tmp_path / "lite0.h5",
                             image_size=32, batch_size=4, num_workers=1, progress=False)
    es = read_embeddings(out)
    assert es.embeddings.shape == (18, 1280) and np.isfinite(es.embeddings).all()
    assert es.attrs["weights"] != "none" and es.attrs["embed_dim"] == 1280
    ref = _reference("lite:efficientnet-lite0", folder, es.ids[:3].tolist(), 32)
    np.testing.assert_allclose(es.embeddings[:3], ref, rtol=1e-4, atol=1e-4)


def test_bad_image_fail_or_skip(folder, tmp_path):
    data = Path(shutil.copytree(folder, tmp_path / "data"))
    bad = "trouser/broken.png"
    (data / bad).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "e.h5"
    with pytest.raises(ImageDecodeError, match=r"broken\.png"):
        extract_embeddings(R18, data, out, image_size=32, batch_size=8, num_workers=0,
                           progress=False)
    assert not out.exists()
    extract_embeddings(R18, data, out, image_size=32, batch_size=8, num_workers=0,
                       on_error="skip", progress=False)
    es = read_embeddings(out)
    assert len(es.ids) == 18 and bad not in es.ids.tolist()
    assert es.attrs["skipped"] == [{"id": bad, "reason": es.attrs["skipped"][0]["reason"]}]
    assert "image" in es.attrs["skipped"][0]["reason"]
    # A later on_error="fail" run may not silently inherit the skip: it names the file instead.
    os.replace(out, tmp_path / "keep.h5")
    with pytest.raises(ImageDecodeError, match=r"broken\.png"):
        extract_embeddings(R18, data, out, image_size=32, batch_size=8, num_workers=0,
                           progress=False)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"batch_size": 0}, r"'batch_size' parameter must be an int >= 1\. Got 0"),
        ({"on_error": "ignore"}, r"'on_error' parameter must be one of \['fail', 'skip'\]"),
        ({"precision": "fp8"}, r"'precision' parameter must be one of"),
        ({"device": "tpu"}, r"'device' parameter must be"),
        ({"num_workers": -1}, r"'num_workers' parameter"),
    ],
)
def test_bad_params(folder, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        extract_embeddings(R18, folder, tmp_path / "x.h5", **kw)


# The child pauses 0.1 s after each (real) batch write, so the parent reliably catches it
# mid-run: at 64 px a batch of 4 takes only a few ms, shorter than the parent's polling. It also
# takes Ctrl-C as a terminal's foreground process would: a shell running the tests in the
# background (CI, nohup) starts children with SIGINT ignored, and Python keeps it so.
_CHILD = """
import signal
import time
signal.signal(signal.SIGINT, signal.default_int_handler)
from linprobe.features import store
from linprobe.features.extract import extract_embeddings
append = store.EmbeddingWriter.append
def slow_append(self, *args, **kwargs):
    append(self, *args, **kwargs)
    time.sleep(0.1)
store.EmbeddingWriter.append = slow_append
extract_embeddings({spec!r}, {data!r}, {out!r}, image_size=64, batch_size=4, num_workers=0,
                   progress=False)
"""


def _run_and_interrupt(data: Path, out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start an extraction in a child process; send ``sig`` once two batches are flushed."""
    partial = out.with_name(out.name + ".partial")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    code = _CHILD.format(spec=R18, data=str(data), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    processed = 0
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with h5py.File(partial, "r", locking=False) as f:
                processed = int(f.attrs["processed"])
        except (OSError, KeyError):
            pass
        if processed >= 8:
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder of 48 images, embeddings of one uninterrupted run in 12 batches)."""
    tmp = tmp_path_factory.mktemp("resume")
    data = write_folder(tmp / "fm", per_class=16, classes=3)
    ref = extract_embeddings(R18, data, tmp / "ref.h5", image_size=64, batch_size=4,
                             num_workers=0, progress=False)
    return data, ref


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_to_identical_embeddings(uninterrupted, tmp_path, sig):
    data, ref = uninterrupted
    out = tmp_path / "run.h5"
    done = _run_and_interrupt(data, out, sig)
    assert done.returncode != 0, "the child finished before it could be interrupted"
    partial = out.with_name("run.h5.partial")
    assert partial.exists() and not out.exists()
    with h5py.File(partial, "r") as f:
        assert 8 <= f.attrs["processed"] < 48
    if sig == signal.SIGINT:
        assert "re-run the same command to resume" in done.stderr
    extract_embeddings(R18, data, out, image_size=64, batch_size=4, num_workers=0,
                       progress=False)
    a, b = read_embeddings(ref), read_embeddings(out)
    assert b.attrs["resumed_from"] >= 8
    assert np.array_equal(a.embeddings, b.embeddings) and np.array_equal(a.ids, b.ids)


def test_partial_from_other_settings_is_discarded(folder, tmp_path, capfd):
    out = tmp_path / "x.h5"
    extract_embeddings(R18, folder, out, image_size=32, batch_size=8, num_workers=0,
                       progress=False)
    os.replace(out, out.with_name("x.h5.partial"))  # looks like a partial from another image size
    with h5py.File(out.with_name("x.h5.partial"), "r+") as f:
        f.attrs["processed"], f.attrs["rows"], f.attrs["skipped_index"] = 8, 8, "json:[]"
    extract_embeddings(R18, folder, out, image_size=48, batch_size=8, num_workers=0,
                       progress=False)
    assert "discarding" in capfd.readouterr().err
    es = read_embeddings(out)
    assert es.attrs["image_size"] == 48 and es.attrs["resumed_from"] == 0
    ref = _reference(R18, folder, es.ids[:2].tolist(), 48)
    np.testing.assert_allclose(es.embeddings[:2], ref, rtol=1e-4, atol=1e-4)


def test_multilabel_manifest_end_to_end(folder, tmp_path):
    ds = load_dataset(folder)
    rows = [f"{folder}/{i},{ds.class_names[k]}|any" for i, k in zip(ds.ids, ds.labels)]
    manifest = tmp_path / "ml.csv"
    manifest.write_text("path,labels\n" + "\n".join(rows) + "\n")
    es = read_embeddings(extract_embeddings(R18, manifest, tmp_path / "ml.h5", image_size=32,
                                            batch_size=8, num_workers=0, progress=False))
    assert es.task == "multilabel" and es.class_names == ["any", *ds.class_names]
    assert es.labels.dtype == np.uint8 and es.labels.shape == (18, 4)
    assert (es.labels[:, 0] == 1).all() and (es.labels[:, 1:].sum(axis=1) == 1).all()


def test_prepare_model_folds_batchnorm_and_keeps_outputs():
    bb = seeded_backbone(R18, image_size=32, layer=None, init_seed=0)
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        ref = bb.model.eval()(x)
        prepared = prepare_model(bb.model, torch.device("cpu"), 32)
        out = prepared(x.contiguous(memory_format=torch.channels_last))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
