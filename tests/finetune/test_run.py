"""linprobe finetune end to end on real images (tiny, CPU): the probes' artifact schema, the
selection protocol, the saved network, and clear errors for impossible configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from linprobe.finetune.model import load_finetuned
from linprobe.finetune.data import checked
from linprobe.features.loader import DecodedBatches
from linprobe.pipeline.cli import main
from linprobe.schema import ArtifactPaths, read_metrics, read_predictions

from .conftest import tiny_folder, write_params


def _run(params, out, backbone="lite0", arm="finetune", *extra: str) -> int:
    return main(["finetune", "--params", str(params), "--backbone", backbone, "--arm", arm,
                 "--out-dir", str(out), *extra])


def test_finetune_writes_the_probe_schema_and_scores_test_with_the_chosen_epoch(
        tmp_path, tiny_data, one_torch_thread, capsys):
    params = write_params(tmp_path / "params.yaml", tiny_data, lrs=[0.001, 0.01])
    out = tmp_path / "artifacts"
    assert _run(params, out) == 0
    assert "thread" in capsys.readouterr().err      # the epoch bars name the threads
    paths = ArtifactPaths(out).finetune_run("lite0", "finetune")
    m = read_metrics(paths["metrics"])   # the report's reader accepts it
    assert m["probe"] == "finetune" and m["solver"] == "AdamW fine-tune"
    assert m["n"] == {"train": 24, "val": 12, "test": 12} and m["embed_dim"] == 1280
    assert set(m["test_ci"]) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert np.asarray(m["confusion_matrix"]).sum() == 12
    hist = m["history"]
    assert [(h["lr"], h["epoch"]) for h in hist] == [(0.001, 1), (0.001, 2), (0.01, 1), (0.01, 2)]
    assert all(h["train_loss"] > 0 and h["images_per_s"] > 0 for h in hist)
    assert hist[1]["lr_end"] == 0.0   # cosine decay ends at 0
    # The chosen (lr, epoch): the best val metric, the first of equals.
    best = max(hist, key=lambda h: h["val"])
    assert m["selection"]["params"] == {"lr": best["lr"], "epoch": best["epoch"]}
    assert m["val"]["accuracy"] == pytest.approx(best["val"])
    assert m["train_cost"]["epochs"] == 4 and m["train_cost"]["images_per_s"] > 0
    # Training batches follow the free cores, as extraction does: 3 batches x 2 epochs x 2 lrs.
    assert m["options"]["threads"] == "auto" and m["threads"]["setting"] == "auto"
    assert sum(m["threads"]["used"].values()) == 12 and m["threads"]["unit"] == "img/s"
    assert m["threads"]["rate"] > 0
    pred = read_predictions(paths["predictions"])
    assert len(pred.ids) == 12 and all(i.startswith("test/") for i in pred.ids)
    scores = np.load(paths["scores"])
    assert scores.shape == (12, 3) and np.allclose(scores.sum(1), 1, atol=1e-5)
    assert m["test"]["accuracy"] == pytest.approx(np.mean(pred.actual == pred.predicted))
    # The saved network is the chosen checkpoint: it reproduces the test scores.
    net, meta = load_finetuned(paths["model"])
    assert meta["lr"] == best["lr"] and meta["epoch"] == best["epoch"]
    from linprobe.features.backbones.preprocess import Preprocess
    pre = Preprocess.from_dict(meta["preprocess"])
    files = [tiny_data / i for i in pred.ids]
    x = torch.cat(list(checked(DecodedBatches(files, 8, pre), files, 8)))
    x = (x.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        np.testing.assert_allclose(net(x).softmax(1).numpy(), scores, atol=1e-5)
    assert not (out / ".finetune-ckpt").exists()


def test_scratch_arm_with_balanced_class_weights(tmp_path, one_torch_thread):
    data = tiny_folder(tmp_path / "data", {"train": 8, "val": 3, "test": 3})
    params = write_params(tmp_path / "params.yaml", data, backbones=["r18"], epochs=1,
                          class_weight="balanced", optimizer="sgd", unfreeze=1,
                          warmup_epochs=0, augment={"random_resized_crop": False}, threads=2)
    assert _run(params, tmp_path / "a", "r18", "scratch", "--threads", "1") == 0
    m = json.loads(ArtifactPaths(tmp_path / "a").metrics("r18", "scratch").read_text())
    # --threads replaces finetune.threads; 24 train images in batches of 8.
    assert m["threads"]["setting"] == 1 and m["threads"]["used"] == {"1": 3}
    # scratch trains every layer whatever `unfreeze` says; the spec is random-init.
    assert m["solver"] == "SGD from scratch" and m["options"]["class_weight"] == "balanced"
    assert m["options"]["trainable_params"] == 11_178_051 and m["options"]["weights"] == "none"


@pytest.mark.parametrize("change, message", [
    ({"backbone": "nope"}, "backbones.nope is not defined"),
    ({"backbone": "r18"}, "finetune.backbones does not list 'r18'"),
    ({"arms": ["scratch"]}, "finetune.arms does not list 'finetune'"),
    ({"batch_size": 64}, "'batch_size' parameter (64) is larger than the 24 training images"),
    ({"unfreeze": 17}, "asks for the last 17 blocks, but this backbone has 16"),
    ({"lrs": []}, "finetune.lrs must be a non-empty list"),
])
def test_impossible_configs_exit_2(tmp_path, tiny_data, capsys, change, message):
    backbone = change.pop("backbone", "lite0")
    params = write_params(tmp_path / "params.yaml", tiny_data, **change)
    assert _run(params, tmp_path / "out", backbone=backbone) == 2
    err = capsys.readouterr().err
    assert err.startswith("linprobe: error: ") and message in err and "Traceback" not in err


def test_a_run_needs_val_images(tmp_path, capsys):
    data = tiny_folder(tmp_path / "data", {"train": 8, "test": 3})
    params = write_params(tmp_path / "params.yaml", data)
    raw = params.read_text().replace("path: ", "val_fraction: 0.0\n  path: ")
    params.write_text(raw)
    assert _run(params, tmp_path / "out") == 2
    assert "needs both: set data.val_fraction" in capsys.readouterr().err


def test_a_foreign_file_at_an_output_is_never_overwritten(tmp_path, tiny_data, capsys):
    params = write_params(tmp_path / "params.yaml", tiny_data)
    model = ArtifactPaths(tmp_path / "out").finetuned_model("lite0", "finetune")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"precious")
    assert _run(params, tmp_path / "out") == 2
    assert "is not a fine-tuned network (.safetensors) written by `linprobe finetune`" \
        in capsys.readouterr().err
    assert model.read_bytes() == b"precious"


def test_multilabel_runs_write_the_probe_schema(tmp_path, one_torch_thread):
    from tests.models.mosaic import copy_mosaic_slice

    manifest = copy_mosaic_slice(tmp_path / "data", {"train": 16, "val": 8, "test": 8})
    params = write_params(tmp_path / "params.yaml", manifest, epochs=1, warmup_epochs=0,
                          class_weight="balanced")
    assert _run(params, tmp_path / "out", arm="finetune") == 0
    paths = ArtifactPaths(tmp_path / "out").finetune_run("lite0", "finetune")
    m = read_metrics(paths["metrics"])
    assert m["task"] == "multilabel" and m["headline"] == "mAP" and "mAP" in m["test_ci"]
    assert m["selection"]["metric"] == "mAP" and set(m["pr_curves"]) <= set(m["class_names"])
    scores = np.load(paths["scores"])
    assert scores.shape == (8, len(m["class_names"])) and ((scores >= 0) & (scores <= 1)).all()
    assert len(read_predictions(paths["predictions"]).ids) == 8
