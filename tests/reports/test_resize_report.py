"""The report's dataset section and metadata show the resize mode and the crop-loss warning."""

from __future__ import annotations

import shutil

import h5py

from linprobe.features.croploss import crop_loss_summary, read_sizes
from linprobe.features.store import encode_attr
from linprobe.reports.build import build_report


def test_crop_warning_and_mode_in_report(multiclass_artifacts, tmp_path):
    art = tmp_path / "artifacts"
    shutil.copytree(multiclass_artifacts, art)
    # Real header sizes of the fixture's square PNGs, plus the same count of 84x28 strips.
    square = read_sizes(sorted((multiclass_artifacts.parent / "data").rglob("*.png")))
    assert square
    wide = crop_loss_summary(square + [(84, 28)] * len(square), 128, 112)
    flat = crop_loss_summary(square, 128, 112)
    pre = {"resize": 128, "crop": 112, "mean": [0.5] * 3, "std": [0.5] * 3,
           "interpolation": "bilinear"}
    for name, mode, loss in (("mnv3", "crop", wide), ("lite0", "pad", wide)):
        with h5py.File(art / "embeddings" / f"{name}.h5", "a") as f:
            f.attrs["preprocess"] = encode_attr({**pre, "resize_mode": mode})
            f.attrs["crop_loss"] = encode_attr(loss)
    html = build_report(art, tmp_path / "r.html", tsne_max=0).read_text()
    dataset = html[html.index('<section id="dataset">'):html.index('<section id="fewshot">')]
    assert dataset.count('class="crop-warning"') == 1  # crop only: pad kept whole images
    assert "Warning (mnv3):" in dataset and "extract.resize: pad" in dataset
    assert wide["mean"] == 0.4896  # half square (23% border trim), half 3:1 (74%)
    assert '<td class="l">lite0</td><td class="l">pad</td><td>49%</td>' in dataset
    metadata = html[html.index('<section id="metadata">'):]
    assert "resize_mode=pad" in metadata and "resize_mode=crop" in metadata

    # Square images: no warning, in crop mode too.
    with h5py.File(art / "embeddings" / "lite0.h5", "a") as f:
        f.attrs["crop_loss"] = encode_attr(flat)
    with h5py.File(art / "embeddings" / "mnv3.h5", "a") as f:
        f.attrs["crop_loss"] = encode_attr(flat)
    html = build_report(art, tmp_path / "r.html", tsne_max=0).read_text()
    assert 'class="crop-warning"' not in html and 'id="crop-loss"' in html
    # Files from before the measure (or hand-edited junk) say "not available".
    for name in ("mnv3", "lite0"):
        with h5py.File(art / "embeddings" / f"{name}.h5", "a") as f:
            f.attrs["crop_loss"] = encode_attr({"mean": "lots"})
    html = build_report(art, tmp_path / "r.html", tsne_max=0).read_text()
    assert "before linprobe measured the crop" in html
