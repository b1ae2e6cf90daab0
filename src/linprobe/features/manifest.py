"""CSV manifests: ``path,label[,split]`` (multi-class) or multi-label, paths relative to the CSV.

Multi-label manifests use either a ``labels`` column of ``|``-separated class names (``a|b``, empty
for none), or one 0/1 column per class (every column other than ``path`` and ``split``).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linprobe.features.store import SPLIT_CODES, SPLITS

_MAX_LISTED = 5  # how many bad rows an error lists before "... and N more"


@dataclass
class ManifestRows:
    """Parsed manifest: ids relative to ``root``; labels (N,) int64 or (N, C) uint8."""

    root: Path
    ids: list[str]
    labels: np.ndarray
    split: np.ndarray | None  # (N,) uint8, or None when the manifest has no split column
    class_names: list[str]
    task: str


def _class_order(names: set[str]) -> list[str]:
    """Sorted class names; numerically when all are integers (so '10' comes after '9')."""
    if names and all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _fail(path: Path, problems: list[str], fix: str) -> None:
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    listed = "\n  ".join(problems[:_MAX_LISTED])
    raise ValueError(f"manifest {path}:\n  {listed}{more}\n{fix}")


def _read_text(path: Path) -> str:
    """The manifest's text; a ValueError naming the file, the likely encoding and the fix when
    it is not UTF-8 (Excel and Windows tools often save UTF-16 or Windows-1252)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:200]:
            guess = "UTF-16 (as Excel's 'Unicode Text' and PowerShell write)"
        else:
            guess = "Latin-1 / Windows-1252 or another 8-bit encoding"
        raise ValueError(
            f"manifest {path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset "
            f"{exc.start}); it looks like {guess}. Re-save it as UTF-8 (e.g. Excel: 'CSV UTF-8', "
            f"or: iconv -t UTF-8 {path.name})"
        ) from None


def _check_header(path: Path, header: list[str]) -> None:
    """Known column names spelt with other case ('Label', 'PATH') or a non-comma separator."""
    known = ("path", "label", "labels", "split")
    wrong = [c for c in header if c.lower() in known and c not in known]
    if wrong:
        fixes = ", ".join(f"{c!r} to {c.lower()!r}" for c in wrong)
        raise ValueError(
            f"manifest {path} has columns {wrong}, but column names are lowercase and "
            f"case-sensitive; rename {fixes} in the header line"
        )
    if len(header) == 1 and any(sep in header[0] for sep in ";\t"):
        raise ValueError(
            f"manifest {path} has a single column {header[0]!r}: it looks separated by "
            "';' or tabs; save it comma-separated (path,label[,split])"
        )


def read_manifest(path: str | Path) -> ManifestRows:
    """Parse and check a CSV manifest; errors name the file, the line and how to fix it."""
    path = Path(path)
    root = path.parent.resolve()
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    header = [c.strip() for c in (reader.fieldnames or [])]
    rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    _check_header(path, header)
    if "path" not in header:
        raise ValueError(
            f"manifest {path} has no 'path' column (columns: {header}); the first line must be "
            "a header such as 'path,label' or 'path,label,split'"
        )
    if not rows:
        raise ValueError(f"manifest {path} has a header but no rows; add one row per image")
    has_split = "split" in header
    class_cols = [c for c in header if c not in ("path", "split", "label", "labels")]
    if "label" in header and "labels" in header:
        raise ValueError(f"manifest {path} has both 'label' and 'labels' columns; keep one")

    problems: list[str] = []
    ids: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        rel = row.get("path", "")
        if not rel:
            problems.append(f"line {line}: empty path")
            continue
        full = Path(rel) if os.path.isabs(rel) else root / rel
        if not full.is_file():
            problems.append(f"line {line}: file {rel!r} does not exist (looked for {full})")
        rid = Path(os.path.relpath(os.path.normpath(full), root)).as_posix()
        if rid in seen:
            problems.append(f"line {line}: {rel!r} is listed again (first on line {seen[rid]})")
        seen[rid] = line
        ids.append(rid)
    if problems:
        _fail(path, problems, "Paths are relative to the manifest's folder; fix or drop the rows.")

    if "label" in header:
        task, labels, class_names = "multiclass", *_single_labels(path, rows)
    elif "labels" in header:
        task, labels, class_names = "multilabel", *_pipe_labels(rows)
    elif class_cols:
        task, labels, class_names = "multilabel", *_indicator_labels(path, rows, class_cols)
    else:
        raise ValueError(
            f"manifest {path} has no label column; add 'label' (one class per image), 'labels' "
            "(a|b|c) or one 0/1 column per class"
        )
    split = _split_column(path, rows) if has_split else None
    return ManifestRows(root, ids, labels, split, class_names, task)


def _single_labels(path: Path, rows: list[dict[str, str]]) -> tuple[np.ndarray, list[str]]:
    empty = [f"line {i}: empty label" for i, r in enumerate(rows, start=2) if not r["label"]]
    if empty:
        _fail(path, empty, "Every row needs a class name in the 'label' column.")
    names = _class_order({r["label"] for r in rows})
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[r["label"]] for r in rows], np.int64), names


def _pipe_labels(rows: list[dict[str, str]]) -> tuple[np.ndarray, list[str]]:
    per_row = [[t.strip() for t in r["labels"].split("|") if t.strip()] for r in rows]
    names = _class_order({t for tags in per_row for t in tags})
    index = {n: i for i, n in enumerate(names)}
    labels = np.zeros((len(rows), len(names)), np.uint8)
    for i, tags in enumerate(per_row):
        labels[i, [index[t] for t in tags]] = 1
    return labels, names


def _indicator_labels(
    path: Path, rows: list[dict[str, str]], cols: list[str]
) -> tuple[np.ndarray, list[str]]:
    bad = [
        f"line {i}: column {c!r} is {r[c]!r}"
        for i, r in enumerate(rows, start=2)
        for c in cols
        if r[c] not in ("0", "1")
    ]
    if bad:
        _fail(path, bad, f"Per-class columns {cols} must hold 0 or 1.")
    return np.array([[int(r[c]) for c in cols] for r in rows], np.uint8), list(cols)


def _split_column(path: Path, rows: list[dict[str, str]]) -> np.ndarray:
    bad = [
        f"line {i}: split {r['split']!r}"
        for i, r in enumerate(rows, start=2)
        if r["split"] not in SPLIT_CODES
    ]
    if bad:
        _fail(path, bad, f"The 'split' column must be one of {list(SPLITS)} on every row.")
    return np.array([SPLIT_CODES[r["split"]] for r in rows], np.uint8)
