"""Atomic artifact writers: each file is written to a temporary name in its final directory and
renamed over the target, so a crash never leaves a half-written artifact (``os.replace`` is
atomic on one filesystem)."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, IO

import joblib
import numpy as np


# Columns of artifacts/predictions/<backbone>/<probe>.csv (class names; multi-label '|'-joined).
PREDICTION_HEADER = ("id", "actual", "predicted", "score")


def run_artifacts(out_dir: str | Path, backbone: str, probe: str) -> dict[str, Path]:
    """The files one train run writes under ``out_dir``, by kind (the metrics file last)."""
    out_dir = Path(out_dir)
    return {"probe": out_dir / "probes" / backbone / f"{probe}.joblib",
            "predictions": out_dir / "predictions" / backbone / f"{probe}.csv",
            "scores": out_dir / "predictions" / backbone / f"{probe}.scores.npy",
            "metrics": out_dir / "metrics" / backbone / f"{probe}.json"}


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


def _atomic(path: str | Path, write: Callable[[IO[Any]], None], mode: str) -> Path:
    """Run ``write(fileobj)`` on a temp file beside ``path`` and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; the artifact gets the mode of any new file (0666 less the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"newline": "", "encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # The target keeps its previous content; only our temp file is removed.
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8)."""
    return _atomic(path, lambda f: f.write(text), "w")


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (NaN is refused: the report reads strict JSON)."""
    text = json.dumps(data, indent=2, allow_nan=False)
    return _atomic(path, lambda f: f.write(text + "\n"), "w")


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file with ``header`` and ``rows``."""
    def write(f: IO[str]) -> None:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return _atomic(path, write, "w")


def dump_model(path: str | Path, model: Any) -> Path:
    """``joblib.dump`` the fitted estimator."""
    return _atomic(path, lambda f: joblib.dump(model, f), "wb")


def save_array(path: str | Path, array: np.ndarray) -> Path:
    """``np.save`` an array (no pickle)."""
    return _atomic(path, lambda f: np.save(f, array, allow_pickle=False), "wb")
