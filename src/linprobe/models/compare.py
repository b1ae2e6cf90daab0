"""Is run A better than run B? The one comparison: a per-image paired bootstrap of the headline
metric that is displayed (:data:`linprobe.schema.HEADLINE`).

- multiclass: accuracy, the mean of per-image correctness (``actual == predicted``);
- multilabel: mAP (:func:`.metrics.mean_ap`), recomputed on every resample of test images from
  the saved test scores (``predictions/<backbone>/<probe>.scores.npy``).

The report's "≈ best" flag and :func:`compare_runs` both call :func:`paired_compare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linprobe.schema import (HEADLINE, ArtifactPaths, Predictions, RunMetrics, read_metrics,
                             read_predictions)

from .metrics import mean_ap, mean_ap_weighted
from .uncertainty import paired_bootstrap, paired_bootstrap_stat


class NotPairedError(ValueError):
    """The two runs were not scored on the same test images (no paired comparison exists)."""


@dataclass(frozen=True)
class RunOutputs:
    """What one run's headline metric is computed from, one row per test image.

    ids (n,) str; multiclass: correct (n,) float 0/1; multilabel: labels (n, C) uint8 multi-hot
    and scores (n, C) float, columns in class-name order. ``source`` names the files (messages).
    """

    task: str
    ids: np.ndarray
    source: str
    correct: np.ndarray | None = None
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None

    @property
    def metric(self) -> str:
        return HEADLINE[self.task]

    def value(self) -> float:
        """The headline metric on the whole test set (what the metrics JSON holds)."""
        if self.task == "multilabel":
            return mean_ap(self.labels, self.scores)
        return float(self.correct.mean())

    def take(self, rows: np.ndarray) -> RunOutputs:
        """The same outputs with rows reordered to ``rows`` (n,) indices."""
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return RunOutputs(self.task, self.ids[rows], self.source, pick(self.correct),
                           pick(self.labels), pick(self.scores))


def run_outputs(task: str, class_names: list[str], ids: np.ndarray, actual: np.ndarray,
                 predicted: np.ndarray, scores: np.ndarray | None, source: str) -> RunOutputs:
    """Build from a predictions CSV's columns (ids, actual, predicted: (n,) str; multi-label
    '|'-joined class names) and, for multilabel, the (n, C) scores in the CSV's row order."""
    ids = np.asarray(ids, dtype=object)
    if task != "multilabel":
        return RunOutputs(task, ids, source,
                           correct=(np.asarray(actual) == np.asarray(predicted)).astype(np.float64))
    col = {name: c for c, name in enumerate(class_names)}
    labels = np.zeros((len(ids), len(class_names)), np.uint8)
    for i, cell in enumerate(actual):
        for name in filter(None, str(cell).split("|")):
            if name not in col:
                raise ValueError(f"{source}: label {name!r} of test image {ids[i]!r} is not one "
                                 f"of the run's class_names {class_names}; re-run `linprobe train`")
            labels[i, col[name]] = 1
    if scores is None or scores.shape != labels.shape or not np.isfinite(scores).all():
        got = None if scores is None else scores.shape
        raise ValueError(f"{source}: the test scores must be a finite ({len(ids)}, "
                         f"{len(class_names)}) array (test images x classes); got {got}. "
                         "Re-run `linprobe train` for this run to rewrite them")
    return RunOutputs(task, ids, source, labels=labels, scores=np.asarray(scores))


def read_run_outputs(artifacts: str | Path, backbone: str, probe: str) -> RunOutputs:
    """Read one run's test outputs from ``artifacts`` (metrics JSON, predictions CSV, and for
    multilabel the scores array). Missing files raise FileNotFoundError naming them."""
    paths = ArtifactPaths(artifacts)
    metrics_file = paths.metrics(backbone, probe)
    if not metrics_file.is_file():
        raise FileNotFoundError(f"metrics file {metrics_file} does not exist; run "
                                f"`linprobe train` for {backbone}/{probe} first")
    return outputs_of(read_metrics(metrics_file),
                      read_predictions(paths.predictions(backbone, probe)),
                      paths.scores(backbone, probe))


def outputs_of(metrics: RunMetrics, preds: Predictions, scores_file: Path) -> RunOutputs:
    """One run's test outputs from its already-read metrics and predictions; for multilabel
    the (n, C) scores are read from ``scores_file`` (FileNotFoundError when it is missing)."""
    task, names = metrics["task"], [str(c) for c in metrics["class_names"]]
    run = f"{metrics['backbone']}/{metrics['probe']}"
    scores = None
    if task == "multilabel":
        if not scores_file.is_file():
            raise FileNotFoundError(f"scores file {scores_file} does not exist (the mAP of "
                                    f"a multi-label run is computed from it); re-run "
                                    f"`linprobe train` for {run}")
        try:
            scores = np.load(scores_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"scores file {scores_file} is not a .npy array ({exc}); "
                             f"re-run `linprobe train` for {run}") from exc
    source = str(scores_file.with_name(scores_file.name.removesuffix(".scores.npy")))
    return run_outputs(task, names, preds.ids, preds.actual, preds.predicted, scores,
                       source=source)


def _align(a: RunOutputs, b: RunOutputs) -> RunOutputs:
    """``b``'s rows in ``a``'s id order; NotPairedError unless both cover the same test ids
    with the same labels."""
    pos = {k: i for i, k in enumerate(b.ids)}
    if a.task != b.task or len(pos) != len(b.ids) or len(a.ids) != len(b.ids) \
            or any(k not in pos for k in a.ids):
        only_a = [k for k in a.ids if k not in pos][:3]
        only_b = sorted(set(b.ids) - set(a.ids))[:3]
        raise NotPairedError(
            f"{a.source} ({a.task}, {len(a.ids)} test images) and {b.source} ({b.task}, "
            f"{len(b.ids)}) are not on the same test set (ids only in A e.g. {only_a}, only in "
            f"B e.g. {only_b}); a paired comparison needs both runs on the same embeddings' "
            "test split")
    b = b.take(np.array([pos[k] for k in a.ids], dtype=np.int64))
    if a.task == "multilabel" and not np.array_equal(a.labels, b.labels):
        raise NotPairedError(f"{a.source} and {b.source} give different true labels for the "
                             "same test ids; they were not extracted from the same dataset")
    return b


def paired_compare(a: RunOutputs, b: RunOutputs, *, n_boot: int = 2000, seed: int = 0,
                   alpha: float = 0.05) -> dict:
    """Paired bootstrap of headline(A) - headline(B), resampling test images (the same rows
    for both runs). Returns {"metric", "value_a", "value_b", "diff", "ci", "p_value",
    "significant", "n", "n_boot"} (see :func:`.uncertainty.paired_bootstrap_stat`).
    Raises NotPairedError when the runs are not on the same test ids."""
    b = _align(a, b)
    if a.task == "multilabel":
        map_a, map_b = mean_ap_weighted(a.labels, a.scores), mean_ap_weighted(b.labels, b.scores)
        out = paired_bootstrap_stat(lambda w: map_a(w) - map_b(w), len(a.ids), n_boot=n_boot,
                                    seed=seed, alpha=alpha)
    else:
        out = paired_bootstrap(a.correct, b.correct, n_boot=n_boot, seed=seed, alpha=alpha)
    return {"metric": a.metric, "value_a": a.value(), "value_b": b.value(), **out}


def compare_runs(artifacts: str | Path, run_a: str, run_b: str, *, n_boot: int = 2000,
                 seed: int = 0, alpha: float = 0.05) -> dict:
    """Compare two runs under ``artifacts`` given as '<backbone>/<probe>' (e.g.
    ``compare_runs("artifacts", "lite0/logreg", "resnet18/logreg")``): :func:`paired_compare`
    of their saved test outputs; diff > 0 means A scores higher."""
    runs = []
    for name, run in (("run_a", run_a), ("run_b", run_b)):
        parts = str(run).split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"The '{name}' parameter of compare_runs must be "
                             f"'<backbone>/<probe>'. Got {run!r} instead.")
        runs.append(read_run_outputs(artifacts, *parts))
    return paired_compare(*runs, n_boot=n_boot, seed=seed, alpha=alpha)
