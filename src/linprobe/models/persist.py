"""Atomic artifact writers: each file is written to a temporary name in its final directory,
fsynced and renamed over the target, so a crash never leaves a half-written artifact
(``os.replace`` is atomic on one filesystem). :func:`write_all` stages several files before
renaming any, so a full disk leaves the previous set of artifacts whole, not half replaced.
Write failures raise :class:`linprobe.diskio.WriteError` naming the file."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, IO

import joblib
import numpy as np

from linprobe.diskio import write_error

# How to write one file: (write(fileobj), open mode).
Writer = tuple[Callable[[IO[Any]], None], str]
_THEN = "the previous file is unchanged; re-run the same command"


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def text(content: str) -> Writer:
    """UTF-8 text."""
    return (lambda f: f.write(content)), "w"


def json_data(data: Any) -> Writer:
    """Indented JSON (NaN is refused: the report reads strict JSON)."""
    content = json.dumps(data, indent=2, allow_nan=False) + "\n"
    return (lambda f: f.write(content)), "w"


def csv_rows(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Writer:
    """A CSV file with ``header`` and ``rows``."""
    def write(f: IO[str]) -> None:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return write, "w"


def model(estimator: Any) -> Writer:
    """``joblib.dump`` of a fitted estimator."""
    return (lambda f: joblib.dump(estimator, f)), "wb"


def array(a: np.ndarray) -> Writer:
    """``np.save`` of an array (no pickle)."""
    return (lambda f: np.save(f, a, allow_pickle=False)), "wb"


def _stage(path: Path, writer: Writer) -> Path:
    """Write to a temp file beside ``path``; return the temp file's path."""
    write, mode = writer
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; the artifact gets the mode of any new file (0666 less the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        kw = {} if "b" in mode else {"newline": "", "encoding": "utf-8"}
        with os.fdopen(fd, mode, **kw) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_all(files: Mapping[str | Path, Writer]) -> list[Path]:
    """Stage every file, then rename them in order (put the file whose presence means
    'complete' last). On failure no target has been touched and the temp files are gone."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, writer in files.items():
            path = Path(path)
            try:
                staged.append((_stage(path, writer), path))
            except OSError as exc:
                raise write_error(path, exc, _THEN) from exc
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [path for _, path in staged]


def write_text(path: str | Path, content: str) -> Path:
    """Write ``content`` (UTF-8)."""
    return write_all({path: text(content)})[0]


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON."""
    return write_all({path: json_data(data)})[0]


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file with ``header`` and ``rows``."""
    return write_all({path: csv_rows(header, rows)})[0]


def dump_model(path: str | Path, estimator: Any) -> Path:
    """``joblib.dump`` the fitted estimator."""
    return write_all({path: model(estimator)})[0]


def save_array(path: str | Path, a: np.ndarray) -> Path:
    """``np.save`` an array (no pickle)."""
    return write_all({path: array(a)})[0]
