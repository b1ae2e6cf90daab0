"""Image datasets: an image folder or a CSV manifest -> ids, labels and a train/val/test split.

Image folder layouts::

    root/<class>/**/<image>                     split assigned here (seeded, stratified)
    root/{train,val,test}/<class>/**/<image>    split given; a missing val (or test) split is
                                                carved from train with the fractions

Ids are posix paths relative to ``root``, sorted, so they are stable across machines and runs.
Walking the folder (links, loops, files left out) is :mod:`.walk`'s job; every dataset carries a
:class:`~linprobe.features.scan.DatasetScan` (counts and warnings), which :func:`scan_dataset`
returns without loading torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from linprobe.features.manifest import read_manifest
from linprobe.features.scan import (
    DatasetScan,
    class_counts,
    left_out_warning,
    reached_twice_warning,
    require_classes,
    small_class_warnings,
)
from linprobe.features.config import SplitConfig
from linprobe.features.splitting import carve_missing, stratified_split
from linprobe.features.store import SPLIT_CODES, TASKS
from linprobe.features.walk import FolderListing, list_folder, one_level_down



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
    scan: DatasetScan | None = field(default=None, repr=False, compare=False)

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


def _load_folder(root: Path) -> tuple[list[str], np.ndarray, np.ndarray | None, list[str],
                                        FolderListing]:
    """(ids, labels (N,), split (N,) or None, class names, listing) of an image folder."""
    listing = list_folder(root)
    per_split = listing.classes
    if "" in per_split:  # no split folders
        classes = per_split[""]
        names = sorted(classes)
        _require_folder_classes(root, names)
        ids = [i for n in names for i in classes[n]]
        labels = np.repeat(np.arange(len(names), dtype=np.int64), [len(classes[n]) for n in names])
        return ids, labels, None, names, listing
    names = sorted(per_split["train"])
    _require_folder_classes(root / "train", names)
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
    return ids, np.array(labels, np.int64), np.array(split, np.uint8), names, listing


def _require_folder_classes(folder: Path, names: list[str]) -> None:
    """Two or more class folders, with a pointer when the data sits one level down."""
    inner = one_level_down(folder, names)
    fix = (f"It looks like the data is one level down: point data.path (or --data) at {inner}."
           if inner else f"Add a folder per class: {folder}/<class>/<image>.")
    require_classes(names, f"image folder {folder}", fix)


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
    path: str | Path,
    *,
    val_fraction: float = SplitConfig.val_fraction,
    test_fraction: float = SplitConfig.test_fraction,
    split_seed: int = SplitConfig.split_seed,
) -> ImageDataset:
    """Load an image folder or a CSV manifest (see the module docstring).

    Without split information, ``val_fraction`` and ``test_fraction`` of each class are assigned
    to val and test (stratified, shuffled by ``split_seed``; see :class:`SplitConfig`); with
    train and test but no val, val is carved from train (likewise test). Raises ValueError /
    FileNotFoundError naming the offending file and the fix, e.g. for fewer than two classes.
    ``.scan`` holds the counts and the warnings (nothing is printed here).
    """
    SplitConfig(val_fraction, test_fraction, split_seed)  # validates
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"dataset path {path} does not exist; pass an image folder (<root>/<class>/<image>) "
            "or a CSV manifest (path,label[,split])"
        )
    listing = None
    if path.is_dir():
        root = path.resolve()
        ids, labels, split, names, listing = _load_folder(root)
        task = "multiclass"
    elif path.suffix.lower() == ".csv":
        m = read_manifest(path)
        root, ids, labels, split, names, task = (
            m.root, m.ids, m.labels, m.split, m.class_names, m.task
        )
        if task == "multiclass":
            require_classes(names, f"manifest {path}", "Label the images with 2 or more classes.")
    else:
        raise ValueError(
            f"dataset path {path} is neither a folder nor a .csv manifest; pass an image folder "
            "or a CSV file with columns path,label[,split]"
        )
    # Sort before splitting so the split does not depend on the manifest's row order.
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    ids, labels = [ids[i] for i in order], labels[order]
    given = set() if split is None else {s for s, c in SPLIT_CODES.items() if (split == c).any()}
    if split is None:
        split = stratified_split(
            labels, val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed
        )
    else:
        split = carve_missing(split[order], labels, val_fraction=val_fraction,
                              test_fraction=test_fraction, split_seed=split_seed)
    ds = ImageDataset(root, ids, labels, split, list(names), task)
    _check_train_covers(ds, path)
    ds.scan = _scan(ds, path, listing, given, {"val": val_fraction, "test": test_fraction})
    return ds


def scan_dataset(path: str | Path, **split: float | int) -> DatasetScan:
    """The counts and warnings of :func:`load_dataset` (same arguments, same errors); reads
    only file names and folder entries, not the images."""
    scan = load_dataset(path, **split).scan
    assert scan is not None
    return scan


def _scan(ds: ImageDataset, path: Path, listing: FolderListing | None, given: set[str],
          fractions: dict[str, float]) -> DatasetScan:
    counts = class_counts(ds.labels, ds.split, ds.class_names)
    # Splits assigned by fraction: all of them without split data, else the ones carve_missing
    # filled (a split absent from the folders/column takes its fraction).
    carved = {s: f for s, f in fractions.items() if s not in given}
    warnings = small_class_warnings(counts, carved)
    left_out: list[tuple[str, str]] = []
    if listing is not None:
        left_out = listing.left_out
        warnings = reached_twice_warning(listing.reached_twice) + \
            left_out_warning(ds.root, left_out) + warnings
    return DatasetScan(
        source=str(path), root=ds.root, task=ds.task, class_names=ds.class_names,
        sizes=ds.counts(), counts=counts,
        left_out=[{"id": i, "reason": r} for i, r in left_out], warnings=warnings,
    )
