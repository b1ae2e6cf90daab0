"""Find and load the pipeline's artifacts (metrics JSON, predictions CSV, embeddings attrs).

Paths, the metrics JSON and the predictions CSV are those of :mod:`linprobe.schema`. Optional
metrics keys may be missing; callers get ``None``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linprobe.features.store import read_attrs
from linprobe.schema import ArtifactPaths, Predictions, RunMetrics, read_metrics, read_predictions


@dataclass
class Run:
    """One backbone x probe result."""

    backbone: str
    probe: str
    metrics: RunMetrics
    metrics_path: Path
    predictions: Predictions | None = None

    def section(self, key: str) -> dict[str, Any]:
        """metrics[key] when it is a JSON object, else {} (absent or malformed optional key)."""
        value = self.metrics.get(key)
        return value if isinstance(value, dict) else {}

    @property
    def task(self) -> str:
        return self.metrics["task"]

    @property
    def headline(self) -> str:
        return self.metrics["headline"]

    @property
    def headline_value(self) -> float | None:
        value = self.section("test").get(self.headline)
        return float(value) if isinstance(value, (int, float)) else None


def _missing_error(artifacts: Path, what: str) -> FileNotFoundError:
    where = ArtifactPaths(artifacts).metrics("<backbone>", "<probe>")
    return FileNotFoundError(
        f"{what} (artifacts directory {artifacts}); run `dvc repro` (or `linprobe extract` and "
        f"`linprobe train`) first so that {where} exist"
    )


# The (backbone, probe) runs params.yaml asks for (probes and fine-tune arms): the runs a report
# shows; None = every run found.
Only = Collection[tuple[str, str]] | None


def _metrics_paths(artifacts: Path) -> list[Path]:
    if not artifacts.is_dir():
        raise _missing_error(artifacts, f"artifacts directory {artifacts} does not exist")
    layout = ArtifactPaths(artifacts)
    paths = layout.metrics_files()
    if not paths:
        raise _missing_error(artifacts, f"no metrics JSON found under {layout.metrics_dir}")
    return paths


def _wanted(path: Path, only: Only) -> bool:
    return only is None or ArtifactPaths.run_of(path) in only


def stale_runs(artifacts: str | Path, only: Only) -> list[str]:
    """'<backbone>/<probe>' of the metrics files left by runs no longer in params (their backbone
    or probe was removed): DVC keeps the outputs of deleted stages, the report ignores them."""
    return ["/".join(ArtifactPaths.run_of(p)) for p in _metrics_paths(Path(artifacts))
            if not _wanted(p, only)]


def load_runs(artifacts: str | Path, only: Only = None) -> list[Run]:
    """The runs under ``artifacts/metrics`` (those of ``only``'s backbones x probes when
    given), sorted by (backbone, probe), predictions attached."""
    artifacts = Path(artifacts)
    paths = [p for p in _metrics_paths(artifacts) if _wanted(p, only)]
    if not paths:
        wanted = ", ".join("/".join(run) for run in sorted(only))
        raise _missing_error(artifacts, f"no metrics JSON of the runs of the params file "
                                        f"({wanted}) found under "
                                        f"{ArtifactPaths(artifacts).metrics_dir}")
    layout, runs = ArtifactPaths(artifacts), []
    for path in paths:
        metrics = read_metrics(path)
        backbone, probe = layout.run_of(path)
        pred_path = layout.predictions(backbone, probe)
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
        path = ArtifactPaths(artifacts).embeddings(name)
        try:
            attrs = read_attrs(path) if path.is_file() else {}
        except OSError:
            attrs = {}
        root, rel = attrs.get("data_root"), attrs.get("data_root_relative")
        if root and rel and not Path(root).is_dir() and (path.parent / rel).is_dir():
            attrs["data_root"] = str((path.parent / rel).resolve())
        out[name] = attrs
    return out
