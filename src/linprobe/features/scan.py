"""What a dataset holds and what looks wrong with it: the report behind extract's warnings and
``linprobe check``.

:class:`DatasetScan` carries the per-split, per-class counts and the warnings: folders or files
reached twice (counted once), files left out (listed with the reason), and classes too small to
get a val or test image. It is built by :func:`linprobe.features.datasets.load_dataset` (see
``scan_dataset`` there, which needs no torch). :func:`require_classes` is the one home of the
"a probe needs two classes" refusal, used at extraction and at training.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from linprobe.features.store import SPLIT_CODES

MAX_LISTED = 5  # paths or classes a warning lists before "... and N more"
MAX_STORED = 500  # left-out entries kept in the HDF5 attrs (an attribute must stay small)
WHY_TWO_CLASSES = (
    "a probe needs at least 2 classes to compare: with one class every prediction is right, "
    "and the score would be a meaningless perfect 1.0"
)


def require_classes(names: list[str], where: str, fix: str) -> None:
    """ValueError unless ``names`` holds at least two classes; ``where`` names the file or
    folder, ``fix`` says what to do."""
    if len(names) < 2:
        got = f"only 1 class ({names[0]!r})" if names else "no classes"
        raise ValueError(f"{where} has {got}; {WHY_TWO_CLASSES}. {fix}")


@dataclass
class DatasetScan:
    """Summary of a loaded dataset. ``sizes[split]``: images per split; ``counts[split][class]``:
    images (multi-label: positives) per class in each split; ``left_out``: [{"id", "reason"}] of files not used; ``warnings``:
    one message each, ready to print."""

    source: str
    root: Path
    task: str
    class_names: list[str]
    sizes: dict[str, int]
    counts: dict[str, dict[str, int]]
    left_out: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def log(self, file: TextIO | None = None) -> None:
        """Print every warning as ``linprobe: warning: ...`` (stderr by default)."""
        for w in self.warnings:
            print(f"linprobe: warning: {w}", file=file or sys.stderr, flush=True)

    def attrs(self) -> dict[str, object]:
        """What the embeddings file records about left-out files (the first MAX_STORED)."""
        return {"left_out": self.left_out[:MAX_STORED], "left_out_total": len(self.left_out)}


def _listed(lines: list[str]) -> str:
    more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return "\n  " + "\n  ".join(lines[:MAX_LISTED]) + more


def reached_twice_warning(pairs: list[tuple[str, str]]) -> list[str]:
    """One warning for folders/files reached through two paths (a symlink loop, a second link,
    a hard link): each was walked or counted once."""
    if not pairs:
        return []
    lines = [f"{a} is the same as {b}" for a, b in pairs]
    return [f"{len(pairs)} folders or files were reached through two paths (symlink loop, "
            f"second link or hard link) and counted once:{_listed(lines)}"]


def left_out_warning(root: Path, left_out: list[tuple[str, str]]) -> list[str]:
    """One warning listing the files that are not used, with a count per reason."""
    if not left_out:
        return []
    by_reason = Counter(r for _, r in left_out)
    summary = ", ".join(f"{n} {r}" for r, n in by_reason.most_common())
    lines = [f"{i} ({r})" for i, r in left_out]
    return [f"{len(left_out)} files under {root} are left out ({summary}); images must be in "
            f"<root>/[<split>/]<class>/ with a supported extension:{_listed(lines)}"]


def class_counts(labels: np.ndarray, split: np.ndarray, names: list[str]) -> dict[str, dict]:
    """{split: {class: images (multi-label: positives)}} for (N,) or (N, C) ``labels``."""
    out = {}
    for s, code in SPLIT_CODES.items():
        rows = labels[split == code]
        n = rows.sum(axis=0) if labels.ndim == 2 else np.bincount(rows, minlength=len(names))
        out[s] = {c: int(k) for c, k in zip(names, n)}
    return out


def small_class_warnings(counts: dict[str, dict[str, int]], carved: dict[str, float]) -> list[str]:
    """Warnings for classes with no val or test image. ``carved``: {split: fraction} of the
    splits assigned by fraction (the others were given by folders or a 'split' column)."""
    out = []
    for s in ("test", "val"):
        if not any(counts[s].values()) and (s == "val" or s not in carved):
            # No such split at all: nothing is missing per class (without val, selection
            # holds out part of train instead; a missing test split is refused at training).
            continue
        if carved.get(s) == 0:
            continue  # the user asked for no such split
        missing = [c for c, k in counts[s].items() if k == 0]
        lines = []
        for c in missing:
            total = sum(counts[x][c] for x in counts)
            if s in carved:
                lines.append(f"class {c!r} has {total} images: none goes to {s} with "
                             f"{s}_fraction {carved[s]}")
            else:
                lines.append(f"class {c!r} has no {s} images (of {total})")
        if lines:
            fix = ("add images to these classes, or give the split explicitly (a "
                   f"{s}/ folder, or a 'split' column in the manifest)") if s in carved else \
                f"add {s} images for these classes"
            who = "1 class gets" if len(missing) == 1 else f"{len(missing)} classes get"
            out.append(f"{who} no {s} image, so its {s} scores are "
                       f"missing:{_listed(lines)}\n  fix: {fix}")
    return out
