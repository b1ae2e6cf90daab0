"""Image-folder and CSV-manifest datasets: ids, labels, splits, fingerprints and error messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from linprobe.features.datasets import load_dataset
from linprobe.features.store import SPLIT_CODES
from tests.features.imagedata import CLASSES, write_folder

TRAIN, VAL, TEST = SPLIT_CODES["train"], SPLIT_CODES["val"], SPLIT_CODES["test"]


def test_folder_without_splits_gets_seeded_stratified_split(tmp_path):
    write_folder(tmp_path, per_class=20, classes=3)
    ds = load_dataset(tmp_path, val_fraction=0.1, test_fraction=0.2, split_seed=0)
    assert ds.task == "multiclass" and ds.class_names == sorted(CLASSES[:3])
    assert ds.ids == sorted(ds.ids) and len(ds) == 60
    assert all(not i.startswith("/") and "/" in i for i in ds.ids)
    assert ds.paths()[0] == tmp_path.resolve() / ds.ids[0]
    for k in range(3):  # stratified: exactly 20% test and 10% val of every class
        in_class = ds.labels == k
        assert [(ds.split[in_class] == c).sum() for c in (TRAIN, VAL, TEST)] == [14, 2, 4]
    again = load_dataset(tmp_path, split_seed=0)
    assert np.array_equal(again.split, ds.split)
    assert not np.array_equal(load_dataset(tmp_path, split_seed=1).split, ds.split)


def test_tiny_classes_keep_a_training_sample(tmp_path):
    write_folder(tmp_path, per_class=1, classes=2)
    ds = load_dataset(tmp_path, val_fraction=0.4, test_fraction=0.5)
    assert (ds.split == TRAIN).all()


def test_folder_with_train_val_test_keeps_the_given_split(tmp_path):
    write_folder(tmp_path, per_class=0, classes=3, splits={"train": 4, "val": 2, "test": 3})
    ds = load_dataset(tmp_path)
    assert ds.counts() == {"train": 12, "val": 6, "test": 9}
    for i, s in zip(ds.ids, ds.split):
        assert i.split("/")[0] == ("train", "val", "test")[s]
        assert ds.class_names[ds.labels[ds.ids.index(i)]] == i.split("/")[1]


def test_missing_val_split_is_carved_from_train_only(tmp_path):
    write_folder(tmp_path, per_class=0, classes=2, splits={"train": 10, "test": 3})
    ds = load_dataset(tmp_path, val_fraction=0.2)
    assert ds.counts() == {"train": 16, "val": 4, "test": 6}
    val_ids = [i for i, s in zip(ds.ids, ds.split) if s == VAL]
    assert all(i.startswith("train/") for i in val_ids)


def test_fingerprint_tracks_content_not_location(tmp_path):
    src = write_folder(tmp_path / "a", per_class=5, classes=2)
    fp = load_dataset(src).fingerprint()
    moved = Path(shutil.copytree(src, tmp_path / "b"))
    assert load_dataset(moved).fingerprint() == fp
    assert load_dataset(moved, split_seed=3).fingerprint() != fp  # another split
    victim = moved / load_dataset(moved).ids[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert load_dataset(moved).fingerprint() != fp


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda r: r / "nope", r"dataset path .*nope does not exist"),
        (lambda r: (r / "x.txt").write_text("hi") and r / "x.txt", r"neither a folder nor a \.csv"),
        (lambda r: (r / "empty" / "cat").mkdir(parents=True) or r / "empty",
         r"class folder .*cat contains no images"),
        (lambda r: (r / "noclass").mkdir() or r / "noclass", r"has no class subfolders"),
    ],
)
def test_bad_paths_name_the_problem(tmp_path, make, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_dataset(make(tmp_path))


def test_class_missing_from_train_is_refused(tmp_path):
    write_folder(tmp_path, per_class=0, classes=2, splits={"train": 3, "test": 2})
    shutil.copytree(tmp_path / "test" / CLASSES[0], tmp_path / "test" / "unicorn")
    with pytest.raises(ValueError, match=r"\['unicorn'\] appear in .*test but not in .*train"):
        load_dataset(tmp_path)


def test_mixed_split_and_class_folders_are_refused(tmp_path):
    write_folder(tmp_path, per_class=0, classes=1, splits={"train": 2})
    write_folder(tmp_path, per_class=2, classes=1)
    with pytest.raises(ValueError, match=r"mixes split folders \['train'\] with other folders"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("kw", [{"val_fraction": -0.1}, {"test_fraction": 1.0},
                                {"val_fraction": 0.5, "test_fraction": 0.5}])
def test_bad_fractions(tmp_path, kw):
    write_folder(tmp_path, per_class=2, classes=1)
    with pytest.raises(ValueError, match="fraction"):
        load_dataset(tmp_path, **kw)


# --- CSV manifests -------------------------------------------------------------------------------


def _manifest(tmp_path: Path, text: str) -> Path:
    write_folder(tmp_path / "imgs", per_class=4, classes=3)
    path = tmp_path / "meta" / "m.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _img(tmp_path: Path, c: int, k: int) -> str:
    return f"../imgs/{CLASSES[c]}/img{k:04d}.png"


def test_manifest_with_split_column(tmp_path):
    rows = [f"{_img(tmp_path, c, k)},{c * 5},{('train', 'train', 'val', 'test')[k]}"
            for c in range(3) for k in range(4)]
    ds = load_dataset(_manifest(tmp_path, "path,label,split\n" + "\n".join(rows) + "\n"))
    assert ds.class_names == ["0", "5", "10"]  # integer class names sort numerically
    assert ds.root == (tmp_path / "meta").resolve()
    assert ds.ids == sorted(ds.ids) and ds.ids[0].startswith("../imgs/")
    assert ds.paths()[0].resolve().is_file()
    assert ds.counts() == {"train": 6, "val": 3, "test": 3}
    assert ds.class_names[ds.labels[ds.ids.index(_img(tmp_path, 2, 3))]] == "10"


def test_manifest_split_ignores_row_order(tmp_path):
    rows = [f"{_img(tmp_path, c, k)},{CLASSES[c]}" for c in range(3) for k in range(4)]
    a = load_dataset(_manifest(tmp_path, "path,label\n" + "\n".join(rows)), val_fraction=0.25)
    b = load_dataset(_manifest(tmp_path, "path,label\n" + "\n".join(rows[::-1])), val_fraction=0.25)
    assert a.ids == b.ids and np.array_equal(a.split, b.split)
    assert np.array_equal(a.labels, b.labels)


def test_manifest_multilabel_pipe_and_indicator_columns(tmp_path):
    a, b = _img(tmp_path, 0, 0), _img(tmp_path, 1, 0)
    pipe = load_dataset(_manifest(tmp_path, f"path,labels\n{a},cat|dog\n{b},\n"), test_fraction=0)
    assert pipe.task == "multilabel" and pipe.class_names == ["cat", "dog"]
    row = {i: r.tolist() for i, r in zip(pipe.ids, pipe.labels)}
    assert pipe.labels.dtype == np.uint8 and row == {a: [1, 1], b: [0, 0]}
    ind = load_dataset(_manifest(tmp_path, f"path,dog,cat\n{a},1,1\n{b},0,1\n"), test_fraction=0)
    row = {i: r.tolist() for i, r in zip(ind.ids, ind.labels)}
    assert ind.class_names == ["dog", "cat"] and row == {a: [1, 1], b: [0, 1]}


@pytest.mark.parametrize(
    "body, match",
    [
        ("file,label\nx.png,a\n", r"no 'path' column"),
        ("path,label\n", r"no rows"),
        ("path,label\n../imgs/missing.png,a\n",
         r"line 2: file '../imgs/missing.png' does not exist"),
        ("path,label,split\n{a},a,training\n", r"line 2: split 'training'.*one of \['train', 'val'"),
        ("path,label\n{a},a\n{a},b\n", r"line 3: .* listed again \(first on line 2\)"),
        ("path,label\n{a},\n", r"line 2: empty label"),
        ("path,cat\n{a},yes\n", r"line 2: column 'cat' is 'yes'.*must hold 0 or 1"),
        ("path,label,split\n{a},a,test\n{b},b,train\n", r"classes \['a'\] appear in val/test"),
    ],
)
def test_manifest_errors_name_the_line(tmp_path, body, match):
    body = body.format(a=_img(tmp_path, 0, 0), b=_img(tmp_path, 1, 0))
    with pytest.raises(ValueError, match="(?s)" + match) as err:
        load_dataset(_manifest(tmp_path, body))
    assert "m.csv" in str(err.value)


def test_scan_dataset_reports_counts_and_warnings_without_torch(tmp_path):
    import subprocess
    import sys

    data = write_folder(tmp_path / "d", per_class=0, classes=2, splits={"train": 4, "test": 2})
    (data / "train" / "notes.txt").write_text("x")
    (data / "train" / CLASSES[0] / "loop").symlink_to(".")
    code = ("import sys; from linprobe.features.datasets import scan_dataset; "
            f"s = scan_dataset({str(data)!r}); assert 'torch' not in sys.modules; "
            "print(s.sizes, s.counts['test'], s.left_out, len(s.warnings))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "{'train': 8, 'val': 0, 'test': 4} {'trouser': 2, 'tshirt': 2} "
        "[{'id': 'train/notes.txt', 'reason': 'not inside a class folder'}] 2")
