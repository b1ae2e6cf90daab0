"""Find and load the pipeline's artifacts (metrics JSON, predictions CSV, embeddings attrs).

Layout read: ``embeddings/<backbone>.h5``, ``metrics/<backbone>/<probe>.json``,
``predictions/<backbone>/<probe>.csv``. Optional keys may be missing; callers get ``None``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from linprobe.features.store import read_attrs
from linprobe.reports.schema import validate_metrics


@dataclass
class Predictions:
    """Test predictions of one run: ids, actual, predicted (class names; multilabel '|'-joined)
    and score, each (n,)."""

    ids: np.ndarray
    actual: np.ndarray
    predicted: np.ndarray
    score: np.ndarray

    def wrong(self, task: str) -> np.ndarray:
        """(n,) bool: the predicted class (multilabel: label set) differs from the actual one.
        For display only (error gallery, accuracy CI); runs are compared by models.compare."""
        if task != "multilabel":
            return np.asarray(self.actual != self.predicted, dtype=bool)
        split = lambda v: set(filter(None, v.split("|")))  # noqa: E731
        return np.array([split(a) != split(p) for a, p in zip(self.actual, self.predicted)],
                        dtype=bool)


@dataclass
class Run:
    """One backbone x probe result."""

    backbone: str
    probe: str
    metrics: dict[str, Any]
    metrics_path: Path
    predictions: Predictions | None = None

    def section(self, key: str) -> dict[str, Any]:
        """metrics[key] when it is a JSON object, else {} (absent or malformed optional key)."""
        value = self.metrics.get(key)
        return value if isinstance(value, dict) else {}

    @property
    def task(self) -> str:
        return str(self.metrics.get("task", "multiclass"))

    @property
    def headline(self) -> str:
        return str(self.metrics.get("headline") or ("mAP" if self.task == "multilabel" else "accuracy"))

    @property
    def headline_value(self) -> float | None:
        value = self.section("test").get(self.headline)
        return float(value) if isinstance(value, (int, float)) else None


def _missing_error(artifacts: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} (artifacts directory {artifacts}); run `dvc repro` (or `linprobe extract` and "
        f"`linprobe train`) first so that {artifacts}/metrics/<backbone>/<probe>.json exist"
    )


def read_predictions(path: Path) -> Predictions:
    """Read ``id,actual,predicted,score`` CSV; a clear error names the file on a bad header."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"id", "actual", "predicted"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ValueError(
                f"predictions file {path} must have the header id,actual,predicted,score; "
                f"got {reader.fieldnames}. Re-run `linprobe train` to rewrite it."
            )
        rows = list(reader)
    score = [float(r["score"]) if r.get("score") not in (None, "") else np.nan for r in rows]
    return Predictions(
        ids=np.array([r["id"] for r in rows], dtype=object),
        actual=np.array([r["actual"] for r in rows], dtype=object),
        predicted=np.array([r["predicted"] for r in rows], dtype=object),
        score=np.array(score, dtype=np.float64),
    )


# (backbone names, probe names) of params.yaml: the runs a report shows; None = every run found.
Only = tuple[set[str], set[str]] | None


def _metrics_paths(artifacts: Path) -> list[Path]:
    if not artifacts.is_dir():
        raise _missing_error(artifacts, f"artifacts directory {artifacts} does not exist")
    paths = sorted((artifacts / "metrics").glob("*/*.json"))
    if not paths:
        raise _missing_error(artifacts, f"no metrics JSON found under {artifacts / 'metrics'}")
    return paths


def _wanted(path: Path, only: Only) -> bool:
    return only is None or (path.parent.name in only[0] and path.stem in only[1])


def stale_runs(artifacts: str | Path, only: Only) -> list[str]:
    """'<backbone>/<probe>' of the metrics files left by runs no longer in params (their backbone
    or probe was removed): DVC keeps the outputs of deleted stages, the report ignores them."""
    return [f"{p.parent.name}/{p.stem}" for p in _metrics_paths(Path(artifacts))
            if not _wanted(p, only)]


def load_runs(artifacts: str | Path, only: Only = None) -> list[Run]:
    """The runs under ``artifacts/metrics`` (those of ``only``'s backbones x probes when
    given), sorted by (backbone, probe), predictions attached."""
    artifacts = Path(artifacts)
    paths = [p for p in _metrics_paths(artifacts) if _wanted(p, only)]
    if not paths:
        raise _missing_error(artifacts, f"no metrics JSON of the backbones {sorted(only[0])} x "
                                        f"probes {sorted(only[1])} of the params file found "
                                        f"under {artifacts / 'metrics'}")
    runs = []
    for path in paths:
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"metrics file {path} is not valid JSON ({exc}); re-run `linprobe train` for "
                f"this backbone and probe (or `dvc repro`) to rewrite it"
            ) from exc
        validate_metrics(metrics, path)
        backbone, probe = path.parent.name, path.stem
        pred_path = artifacts / "predictions" / backbone / f"{probe}.csv"
        preds = read_predictions(pred_path) if pred_path.is_file() else None
        runs.append(Run(backbone=backbone, probe=probe, metrics=metrics, metrics_path=path,
                        predictions=preds))
    return runs


def load_backbone_attrs(artifacts: str | Path, backbones: list[str]) -> dict[str, dict[str, Any]]:
    """HDF5 attrs per backbone name; a missing or unreadable file gives an empty dict.

    ``data_root`` is the absolute image folder recorded at extraction; when that is gone but
    ``data_root_relative`` (from the HDF5 file's folder) exists, the data moved along with the
    artifacts (a moved or re-cloned repo) and the relative one is used.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in backbones:
        path = Path(artifacts) / "embeddings" / f"{name}.h5"
        try:
            attrs = read_attrs(path) if path.is_file() else {}
        except OSError:
            attrs = {}
        root, rel = attrs.get("data_root"), attrs.get("data_root_relative")
        if root and rel and not Path(root).is_dir() and (path.parent / rel).is_dir():
            attrs["data_root"] = str((path.parent / rel).resolve())
        out[name] = attrs
    return out
