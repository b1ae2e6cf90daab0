"""Hostile folders and manifests (issue 9, item 7): links, loops, too few classes, data one level
down, tiny classes, files left out, manifests in other encodings or with misspelt columns.

Each case runs the real ``linprobe`` command (extract with a random-init ResNet-18 at 32 px, or
train) and asserts the exit code, the message, that no input changed and that no traceback was
printed. Successful runs also check what went into the embeddings file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from linprobe.features.store import SPLIT_CODES, encode_attr, read_attrs, read_embeddings
from tests.features.imagedata import CLASSES, write_folder
from tests.hostile.harness import expect_error, expect_ok

BACKBONE = "torchvision:resnet18:none"
A, B, C = sorted(CLASSES[:3])  # the fixture's class folders: pullover, trouser, tshirt


def extract(data: Path, out: Path, *extra: str) -> list[str]:
    return ["extract", "--backbone", BACKBONE, "--data", data, "--out", out, "--image-size", "32",
            "--batch-size", "16", "--device", "cpu", *extra]


def ids_of(h5: Path) -> list[str]:
    return list(read_embeddings(h5, load_embeddings=False).ids)


def warning(stderr: str) -> str:
    assert "linprobe: warning:" in stderr, stderr
    return stderr[stderr.index("linprobe: warning:"):]


# --- links: each folder walked once, each file counted once ----------------------------------


def test_symlink_loop_is_walked_once(folder, tmp_path):
    expect_ok(extract(folder, tmp_path / "clean.h5"))
    clean = ids_of(tmp_path / "clean.h5")
    (folder / "train" / A / "loop").symlink_to(".")          # a folder containing itself
    (folder / "train" / B / "up").symlink_to("../..")        # back up to the root
    out = tmp_path / "e.h5"
    r = expect_ok(extract(folder, out), watch=[folder])
    assert ids_of(out) == clean  # without the fix, A had 20x its images
    w = warning(r.err)
    assert f"train/{A}/loop is the same as train/{A}" in w and f"train/{B}/up is the same as ." in w


def test_folder_reached_twice_is_walked_once(folder, tmp_path):
    extra = write_folder(tmp_path / "shared", per_class=3, classes=1) / CLASSES[0]
    (folder / "train" / A / "more").symlink_to(extra)
    (folder / "train" / B / "also").symlink_to(extra)     # the same folder under another class
    (folder / "train" / C / "linked_class").symlink_to(folder / "train" / A)
    out = tmp_path / "e.h5"
    r = expect_ok(extract(folder, out), watch=[folder, tmp_path / "shared"])
    ids = ids_of(out)
    assert sum(i.startswith(f"train/{A}/more/") for i in ids) == 3
    assert not any("/also/" in i or "/linked_class/" in i for i in ids)
    assert len(ids) == 30 + 3
    w = warning(r.err)
    assert f"train/{B}/also is the same as train/{A}/more" in w
    assert f"train/{C}/linked_class is the same as train/{A}" in w


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_duplicate_file_is_counted_once_and_named(folder, tmp_path, how):
    first = sorted((folder / "train" / A).iterdir())[0]
    dup = folder / "train" / A / "zz_copy.png"
    dup.symlink_to(first.name) if how == "symlink" else os.link(first, dup)
    out = tmp_path / "e.h5"
    r = expect_ok(extract(folder, out), watch=[folder])
    ids = ids_of(out)
    assert len(ids) == 30 and f"train/{A}/{first.name}" in ids
    assert f"train/{A}/zz_copy.png is the same as train/{A}/{first.name}" in warning(r.err)


def test_class_folder_linked_to_another_class_is_dropped(folder, tmp_path):
    (folder / "train" / "zebra").symlink_to(folder / "train" / A)
    out = tmp_path / "e.h5"
    r = expect_ok(extract(folder, out), watch=[folder])
    assert read_attrs(out)["class_names"] == [A, B, C] and len(ids_of(out)) == 30
    assert f"train/zebra is the same as train/{A}" in warning(r.err)


# --- fewer than two classes ------------------------------------------------------------------


def test_one_class_folder_is_refused(tmp_path):
    data = write_folder(tmp_path / "data", per_class=6, classes=1)
    expect_error(extract(data, tmp_path / "e.h5"),
                 [r"only 1 class \('tshirt'\)", r"at least 2 classes", r"meaningless perfect 1\.0",
                  r"folder per class"], watch=[tmp_path])
    assert not (tmp_path / "e.h5").exists()


def test_one_class_under_train_is_refused(tmp_path):
    data = write_folder(tmp_path / "data", per_class=0, classes=1, splits={"train": 4, "test": 2})
    expect_error(extract(data, tmp_path / "e.h5"),
                 [r"image folder .*data/train has only 1 class", r"at least 2 classes"],
                 watch=[tmp_path])


def test_pointing_one_level_above_the_data_is_explained(tmp_path, folder):
    parent = tmp_path / "parent"
    parent.mkdir()
    shutil.move(folder, parent / "my-data")
    expect_error(extract(parent, tmp_path / "e.h5"),
                 [r"only 1 class \('my-data'\)", r"one level down",
                  rf"point data\.path \(or --data\) at {parent}/my-data\b"], watch=[tmp_path])


def test_split_folders_in_the_wrong_case_are_not_taken_as_classes(tmp_path):
    data = write_folder(tmp_path / "data", per_class=0, classes=2, splits={"train": 3, "test": 2})
    (data / "train").rename(data / "Train")
    (data / "test").rename(data / "Test")
    expect_error(extract(data, tmp_path / "e.h5"),
                 [r"\['Test', 'Train'\] that look like split folders", r"lowercase"],
                 watch=[tmp_path])


def _h5(path: Path, labels: list[int], split: list[str], class_names: list[str]) -> Path:
    """A hand-made embeddings file (as another tool or an old linprobe might write)."""
    n = len(labels)
    with h5py.File(path, "w") as f:
        f["embeddings"] = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
        f["ids"] = np.array([f"img{i}.png" for i in range(n)], dtype=h5py.string_dtype())
        f["labels"] = np.array(labels, np.int64)
        f["split"] = np.array([SPLIT_CODES[s] for s in split], np.uint8)
        f.attrs["class_names"] = encode_attr(class_names)
        f.attrs["task"] = "multiclass"
    return path


def test_train_refuses_a_one_class_embeddings_file(tmp_path):
    h5 = _h5(tmp_path / "old.h5", [0] * 8, ["train"] * 6 + ["test"] * 2, ["cat"])
    expect_error(["train", "--embeddings", h5, "--probe", "logreg", "--out-dir", tmp_path / "a"],
                 [r"old\.h5 has only 1 class \('cat'\)", r"meaningless perfect 1\.0",
                  r"Re-extract"], watch=[tmp_path])
    assert not (tmp_path / "a").exists()


def test_train_refuses_a_train_split_with_one_class(tmp_path):
    h5 = _h5(tmp_path / "e.h5", [0] * 6 + [1] * 2, ["train"] * 6 + ["test"] * 2, ["cat", "dog"])
    expect_error(["train", "--embeddings", h5, "--probe", "logreg", "--out-dir", tmp_path / "a"],
                 [r"train split of .*e\.h5 has only 1 class \('cat'\)"], watch=[tmp_path])


# --- classes too small for val / test ---------------------------------------------------------


def test_classes_too_small_for_test_are_reported(tmp_path):
    data = write_folder(tmp_path / "data", per_class=10, classes=2)
    for extra in sorted((data / CLASSES[1]).iterdir())[2:]:
        extra.unlink()  # trouser keeps 2 images: round(2 * 0.2) = 0 go to test
    out = tmp_path / "e.h5"
    r = expect_ok(extract(data, out), watch=[data])
    w = warning(r.err)
    assert "class 'trouser' has 2 images: none goes to test with test_fraction 0.2" in w
    assert "'split' column" in w and "tshirt" not in w.split("val")[0]
    assert len(ids_of(out)) == 12


def test_class_without_images_in_the_test_folder_is_reported(tmp_path):
    data = write_folder(tmp_path / "data", per_class=0, classes=3, splits={"train": 4, "test": 2})
    shutil.rmtree(data / "test" / CLASSES[2])
    r = expect_ok(extract(data, tmp_path / "e.h5"), watch=[data])
    assert "class 'pullover' has no test images (of 4)" in warning(r.err)
    assert "add test images" in r.err


# --- files left out are listed -----------------------------------------------------------------


def test_loose_images_at_the_root_are_listed(tmp_path):
    data = write_folder(tmp_path / "data", per_class=5, classes=2)
    shutil.copy(next((data / CLASSES[0]).iterdir()), data / "stray.png")
    (data / "notes.txt").write_text("where the data came from")
    out = tmp_path / "e.h5"
    r = expect_ok(extract(data, out), watch=[data])
    w = warning(r.err)
    assert "2 files under" in w and "stray.png (not inside a class folder)" in w
    attrs = read_attrs(out)
    assert {"id": "stray.png", "reason": "not inside a class folder"} in attrs["left_out"]
    assert attrs["left_out_total"] == 2 and len(ids_of(out)) == 10


def test_loose_images_directly_under_train_are_listed(folder, tmp_path):
    shutil.copy(next((folder / "train" / A).iterdir()), folder / "train" / "stray.png")
    out = tmp_path / "e.h5"
    r = expect_ok(extract(folder, out), watch=[folder])
    assert "train/stray.png (not inside a class folder)" in warning(r.err)
    assert [e["id"] for e in read_attrs(out)["left_out"]] == ["train/stray.png"]


def test_unsupported_and_hidden_files_are_listed(folder, tmp_path):
    cls = folder / "train" / A
    (cls / "vector.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (cls / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (cls / ".DS_Store").write_bytes(b"\0Bud1")
    (cls / "gone.png").symlink_to("nowhere.png")
    out = tmp_path / "e.h5"
    r = expect_ok(extract(folder, out), watch=[folder])
    w = warning(r.err)
    assert "4 files under" in w and "unsupported format (.svg)" in w and "1 hidden file" in w
    left = {e["id"]: e["reason"] for e in read_attrs(out)["left_out"]}
    assert left[f"train/{A}/vector.svg"] == "unsupported format (.svg)"
    assert left[f"train/{A}/phone.heic"] == "unsupported format (.heic)"
    assert left[f"train/{A}/.DS_Store"] == "hidden file"
    assert left[f"train/{A}/gone.png"].startswith("cannot be read")
    assert len(ids_of(out)) == 30


# --- manifests ---------------------------------------------------------------------------------


def _rows(data: Path) -> list[str]:
    return [f"{p.relative_to(data.parent).as_posix()},{p.parent.name}"
            for p in sorted(data.rglob("*.png"))]


@pytest.mark.parametrize("encoding, match", [
    ("utf-16", r"looks like UTF-16"),
    ("latin-1", r"byte 0xe9 .*looks like Latin-1"),
])
def test_manifest_in_another_encoding_is_named_with_the_fix(tmp_path, encoding, match):
    data = write_folder(tmp_path / "data", per_class=4, classes=2)
    csv = tmp_path / "m.csv"
    csv.write_text("path,label,note\n" + "\n".join(r + ",café" for r in _rows(data)) + "\n",
                   encoding=encoding)
    expect_error(extract(csv, tmp_path / "e.h5"),
                 [r"manifest .*m\.csv is not UTF-8", match, r"Re-save it as UTF-8"],
                 watch=[tmp_path])


@pytest.mark.parametrize("header, match", [
    ("path,Label", r"\['Label'\].*rename 'Label' to 'label'"),
    ("Path,label", r"\['Path'\].*rename 'Path' to 'path'"),
])
def test_manifest_column_in_the_wrong_case_is_named(tmp_path, header, match):
    data = write_folder(tmp_path / "data", per_class=4, classes=2)
    csv = tmp_path / "m.csv"
    csv.write_text(header + "\n" + "\n".join(_rows(data)) + "\n")
    expect_error(extract(csv, tmp_path / "e.h5"), [r"manifest .*m\.csv", match], watch=[tmp_path])


def test_manifest_with_one_class_is_refused(tmp_path):
    data = write_folder(tmp_path / "data", per_class=4, classes=1)
    csv = tmp_path / "m.csv"
    csv.write_text("path,label\n" + "\n".join(_rows(data)) + "\n")
    expect_error(extract(csv, tmp_path / "e.h5"),
                 [r"manifest .*m\.csv has only 1 class \('tshirt'\)", r"at least 2 classes"],
                 watch=[tmp_path])


def test_check_lists_left_out_files_before_any_work(folder: Path, tmp_path: Path) -> None:
    (folder / "notes.txt").write_text("not an image")
    (folder / "train" / "loose.png").write_bytes((folder / "train" / "tshirt").iterdir()
                                                 .__next__().read_bytes())
    params = tmp_path / "params.yaml"
    params.write_text(f"data:\n  path: {folder}\nbackbones:\n  r18:\n    spec: "
                      "torchvision:resnet18:none\nprobes:\n  logreg: {}\n")
    r = expect_ok(["check", "--params", params], watch=[folder, params])
    assert "linprobe: warning:" in r.err and "notes.txt" in r.err and "loose.png" in r.err
