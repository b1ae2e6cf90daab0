"""What every scored run shares, probe or fine-tune arm: test metrics with bootstrap CIs from
the test scores, the val summary, missing classes, and writing the run's artifacts.

``linprobe train`` (:mod:`.train`) and ``linprobe finetune`` (:mod:`linprobe.finetune.run`) both
go through here, so their metrics JSON, predictions CSV and scores file are the same schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from linprobe.schema import PREDICTION_HEADER, RunMetrics

from . import metrics as M
from . import persist
from .uncertainty import bootstrap_cis_weighted

# The test metrics that get bootstrap intervals, each as f(y, pred or scores) -> f(W) -> (m,):
# the metric under resample draw counts W (m, n), so 1000 resamples cost a few array operations.
CI_METRICS = {"multiclass": {"accuracy": M.accuracy_weighted,
                             "balanced_accuracy": M.balanced_accuracy_weighted,
                             "macro_f1": M.macro_f1_weighted},
              "multilabel": {"mAP": M.mean_ap_weighted}}


def score_run(task: str, class_names: list[str], y_te: np.ndarray, scores: np.ndarray,
              kind: str, eval_y: np.ndarray, eval_scores: np.ndarray, *, n_boot: int,
              alpha: float, seed: int, pred: np.ndarray | None = None):
    """Score test once from its scores: (test metrics, val summary, test predictions, bootstrap
    CIs of the headline metrics).

    scores: (n_test, C) probabilities or decision values (``kind``); eval_y / eval_scores: the
    held-out selection data and its scores, (n_val,) or (n_val, C), and (n_val, C). Multilabel
    thresholds are tuned per class on the held-out scores. ``pred`` (n_test,): multiclass
    predictions when the model's own ``predict`` differs from the argmax of ``scores``.
    """
    if task == "multilabel":
        thr = M.tune_thresholds(eval_y, eval_scores, 0.5 if kind == "probability" else 0.0)
        test = M.multilabel_metrics(y_te, scores, thr, class_names)
        val = M.multilabel_metrics(eval_y, eval_scores, thr, class_names)["summary"]
        pred = (scores >= thr[None, :]).astype(np.uint8)
        ci_args = {"mAP": (y_te, scores)}
    else:
        pred = (np.argmax(scores, axis=1) if pred is None else pred).astype(np.int64)
        test = M.multiclass_metrics(y_te, pred, scores, class_names)
        val = M.multiclass_metrics(eval_y, np.argmax(eval_scores, axis=1), eval_scores,
                                   class_names)["summary"]
        ci_args = {name: (y_te, pred) for name in CI_METRICS["multiclass"]}
    cis = bootstrap_cis_weighted({name: CI_METRICS[task][name](*args)
                                  for name, args in ci_args.items()},
                                 len(y_te), n_boot=n_boot, alpha=alpha, seed=seed)
    test_ci = {name: [_js(v) for v in ci] for name, ci in cis.items()}
    return test, val, pred, test_ci


def add_test_details(result: RunMetrics, task: str, test: dict) -> None:
    """The task's test curves: PR curves (multilabel) or the confusion matrix (multiclass)."""
    if task == "multilabel":
        result["pr_curves"] = test["pr_curves"]
    else:
        result["confusion_matrix"] = test["confusion_matrix"]


def missing_classes(labels: np.ndarray, split: Mapping[str, np.ndarray], class_names: list[str],
                    task: str) -> dict[str, list[str]]:
    """Class names with no sample (multiclass) / no positive (multilabel) in each split.
    labels: (N,) or (N, C); split: name -> (N,) bool mask."""
    out = {}
    for name, mask in split.items():
        y = labels[mask]
        present = (y.sum(axis=0) > 0) if task == "multilabel" else \
            np.isin(np.arange(len(class_names)), y)
        out[name] = [c for c, p in zip(class_names, present) if not p]
    return out


def write_run(paths: Mapping[str, Path], model: persist.Writer, result: RunMetrics,
              class_names: list[str], task: str, ids: np.ndarray, y: np.ndarray,
              pred: np.ndarray, scores: np.ndarray) -> None:
    """Write one run's artifacts atomically: ``paths`` holds "predictions", "scores", "metrics"
    and one model entry (any other key: the probe's joblib or the fine-tuned network), written
    by ``model``. ids (n,), y and pred (n,) or (n, C), scores (n, C) float32."""
    names = np.asarray(class_names, dtype=object)
    if task == "multilabel":
        rows = zip(ids, ("|".join(names[r.astype(bool)]) for r in y),
                   ("|".join(names[r.astype(bool)]) for r in pred), scores.max(axis=1))
    else:
        rows = zip(ids, names[y], names[pred], scores[np.arange(len(pred)), pred])
    rows = ((i, a, p, f"{float(s):.6g}") for i, a, p, s in rows)
    (model_key,) = set(paths) - {"predictions", "scores", "metrics"}
    # Staged together, renamed together: a failure (disk full) leaves the previous set whole.
    persist.write_all({
        paths[model_key]: model,
        paths["predictions"]: persist.csv_rows(PREDICTION_HEADER, rows),
        paths["scores"]: persist.array(scores),
        # The metrics file goes last: its presence means the other artifacts are complete.
        paths["metrics"]: persist.json_data(result),
    })


def _js(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
