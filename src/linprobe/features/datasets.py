"""Image datasets: an image folder or a CSV manifest -> ids, labels and a train/val/test split.

Image folder layouts::

    root/<class>/**/<image>                     split assigned here (seeded, stratified)
    root/{train,val,test}/<class>/**/<image>    split given; a missing val (or test) split is
                                                carved from train with the fractions

Ids are posix paths relative to ``root``, sorted, so they are stable across machines and runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linprobe.features.manifest import read_manifest
from linprobe.features.splitting import carve_missing, check_fractions, stratified_split
from linprobe.features.store import SPLIT_CODES, SPLITS, TASKS

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


@dataclass
class ImageDataset:
    """A labelled image collection.

    ids: N posix paths relative to ``root``; labels: (N,) int64 or (N, C) uint8 multi-hot;
    split: (N,) uint8 codes into store.SPLITS.
    """

    root: Path
    ids: list[str]
    labels: np.ndarray
    split: np.ndarray
    class_names: list[str]
    task: str

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if len(self.labels) != n or len(self.split) != n:
            raise ValueError(
                f"ids ({n}), labels ({len(self.labels)}) and split ({len(self.split)}) differ"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def paths(self) -> list[Path]:
        """Absolute paths of the N images, in id order."""
        return [self.root / i for i in self.ids]

    def counts(self) -> dict[str, int]:
        """Number of samples per split name."""
        return {s: int((self.split == c).sum()) for s, c in SPLIT_CODES.items()}

    def fingerprint(self) -> str:
        """sha256 hex of ids, labels, split, class names, task and file sizes.

        Independent of where the dataset lives (ids are relative), so a moved copy matches.
        """
        h = hashlib.sha256()
        h.update(json.dumps([self.task, self.class_names, self.ids]).encode())
        h.update(np.ascontiguousarray(self.labels).astype(np.int64).tobytes())
        h.update(np.ascontiguousarray(self.split).astype(np.uint8).tobytes())
        sizes = np.array([os.stat(p).st_size for p in self.paths()], np.int64)
        h.update(sizes.tobytes())
        return h.hexdigest()


def _images_under(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive, hidden files skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath) / f
            for f in filenames
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        ]
    return sorted(found)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_classes(folder: Path, root: Path) -> dict[str, list[str]]:
    """{class name: [ids]} for ``folder/<class>/...``; empty class folders are an error."""
    classes = {}
    for cdir in _subdirs(folder):
        files = _images_under(cdir)
        if not files:
            raise ValueError(
                f"class folder {cdir} contains no images (extensions: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder"
            )
        classes[cdir.name] = [f.relative_to(root).as_posix() for f in files]
    if not classes:
        raise ValueError(
            f"{folder} has no class subfolders; expected {folder}/<class>/<image> "
            f"(optionally under {'/'.join(SPLITS)}/), or pass a CSV manifest instead"
        )
    return classes


def _load_folder(root: Path) -> tuple[list[str], np.ndarray, np.ndarray | None, list[str]]:
    """(ids, labels (N,), split (N,) or None, class names) of an image folder."""
    subdirs = [d.name for d in _subdirs(root)]
    split_dirs = [d for d in subdirs if d in SPLIT_CODES]
    if not split_dirs:
        classes = _scan_classes(root, root)
        names = sorted(classes)
        ids = [i for n in names for i in classes[n]]
        labels = np.repeat(np.arange(len(names), dtype=np.int64), [len(classes[n]) for n in names])
        return ids, labels, None, names
    others = sorted(set(subdirs) - set(split_dirs))
    if others:
        raise ValueError(
            f"{root} mixes split folders {split_dirs} with other folders {others}; put every "
            f"class folder under one of {list(SPLITS)}, or use no split folders at all"
        )
    if "train" not in split_dirs:
        raise ValueError(f"{root} has split folders {split_dirs} but no 'train' folder; add it")
    per_split = {s: _scan_classes(root / s, root) for s in SPLITS if s in split_dirs}
    names = sorted(per_split["train"])
    for s, classes in per_split.items():
        unknown = sorted(set(classes) - set(names))
        if unknown:
            raise ValueError(
                f"classes {unknown} appear in {root / s} but not in {root / 'train'}; a probe "
                "cannot learn classes without training images; add them to train or remove them"
            )
    index = {n: k for k, n in enumerate(names)}
    ids, labels, split = [], [], []
    for s, classes in per_split.items():
        for n in sorted(classes):
            ids += classes[n]
            labels += [index[n]] * len(classes[n])
            split += [SPLIT_CODES[s]] * len(classes[n])
    return ids, np.array(labels, np.int64), np.array(split, np.uint8), names


def _check_train_covers(ds: ImageDataset, source: Path) -> None:
    """Every class present in val/test must have training samples."""
    train = ds.split == SPLIT_CODES["train"]

    def present(rows: np.ndarray) -> np.ndarray:  # (C,) bool: class has a sample among rows
        if ds.task == "multilabel":
            return ds.labels[rows].any(axis=0)
        return np.bincount(ds.labels[rows], minlength=len(ds.class_names)) > 0

    in_train, elsewhere = present(train), present(~train)
    missing = [ds.class_names[k] for k in np.flatnonzero(elsewhere & ~in_train)]
    if missing:
        raise ValueError(
            f"{source}: classes {missing} appear in val/test but have no training samples; "
            "add training images for them or drop them from val/test"
        )


def load_dataset(
    path: str | Path, *, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> ImageDataset:
    """Load an image folder or a CSV manifest (see the module docstring).

    Without split information, ``val_fraction`` and ``test_fraction`` of each class are assigned
    to val and test (seeded, stratified); with train and test but no val, val is carved from
    train (likewise test). Raises ValueError / FileNotFoundError naming the offending file and
    the fix.
    """
    check_fractions(val_fraction, test_fraction)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"dataset path {path} does not exist; pass an image folder (<root>/<class>/<image>) "
            "or a CSV manifest (path,label[,split])"
        )
    if path.is_dir():
        root = path.resolve()
        ids, labels, split, names = _load_folder(root)
        task = "multiclass"
    elif path.suffix.lower() == ".csv":
        m = read_manifest(path)
        root, ids, labels, split, names, task = (
            m.root, m.ids, m.labels, m.split, m.class_names, m.task
        )
    else:
        raise ValueError(
            f"dataset path {path} is neither a folder nor a .csv manifest; pass an image folder "
            "or a CSV file with columns path,label[,split]"
        )
    # Sort before splitting so the split does not depend on the manifest's row order.
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    ids, labels = [ids[i] for i in order], labels[order]
    if split is None:
        split = stratified_split(
            labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
    else:
        split = carve_missing(
            split[order], labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
    ds = ImageDataset(root, ids, labels, split, list(names), task)
    _check_train_covers(ds, path)
    return ds
